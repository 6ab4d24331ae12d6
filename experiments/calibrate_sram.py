"""Calibration of jaxloop.estimate's SRAM model against CACTI 7.

Accelergy estimates ``SRAM`` with CACTI (HP Labs' CACTI 7.0,
github.com/HewlettPackard/cacti, run by Accelergy's CACTI plug-in).  CACTI
searches array organisations for each size, so its energies are a noisy,
stepped function of width and depth; jaxloop instead uses a smooth surface
fitted to a sweep of CACTI results:

* ``--run``: runs a CACTI binary (built from the sources above) as a black box
  for every width in 32..1024 bits and depth in 64..65536 rows (at most
  16 Mbit) at 22/32/45/65/90 nm, with a configuration file such as the one
  Accelergy's CACTI plug-in passes (a RAM, one read/write port, one bank,
  ITRS low-standby-power cells and periphery, leakage-weighted optimisation)
  plus size, block size (= width), bus width and technology; it writes
  ``experiments/results/cacti_sram_sweep.csv`` (read/write energy per access,
  standby leakage, area);
* without ``--run``: fits, at 45 nm, ``log(y)`` as a cubic polynomial of
  ``log2(width)`` and ``log2(depth)`` for read energy, write energy, leakage
  and area (least squares, constrained to be non-decreasing in width and
  depth over the fitted region), and per-node factors (median ratio to
  45 nm over the sweep), and prints them in the form of
  ``jaxloop/estimate/calibration.py`` together with the fit's error.

Usage:
  python experiments/calibrate_sram.py --run --cacti DIR --cfg FILE
  python experiments/calibrate_sram.py
"""
from __future__ import annotations

import argparse
import csv
import os
import subprocess
import tempfile
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parent / "results" / "cacti_sram_sweep.csv"
WIDTHS = (32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024)
DEPTHS = (64, 96, 128, 192, 256, 384, 512, 768, 1024, 1536, 2048, 3072,
          4096, 6144, 8192, 12288, 16384, 32768, 65536)
NODES = (22, 32, 45, 65, 90)
FIELDS = ("tech_nm", "width", "depth", "read_pj", "write_pj", "leak_mw",
          "area_um2")


def run_cacti(cacti_dir: str, cfg_text: str, width: int, depth: int,
              node: int):
  """One CACTI run: (read pJ, write pJ, leakage mW, area um^2) or None."""
  block = width // 8
  cfg = cfg_text + "\n" + "\n".join((
      f"-size (bytes) {width * depth // 8}",
      "-read-write port  1",
      f"-block size (bytes) {block}",
      f"-technology (u) {node / 1000}",
      f"-output/input bus width  {width}",
      "-UCA bank 1",
      '-cache type "ram"',
      "-tag size (b) 0",
      "-associativity 1")) + "\n"
  fd, path = tempfile.mkstemp(suffix=".cfg")
  os.write(fd, cfg.encode())
  os.close(fd)
  try:
    subprocess.run(["./cacti", "-infile", path], cwd=cacti_dir,
                   capture_output=True, check=False)
    if not os.path.exists(path + ".out"):
      return None
    with open(path + ".out") as f:
      row = list(csv.DictReader(f))[-1]
    os.remove(path + ".out")
  finally:
    os.remove(path)
  return (float(row[" Dynamic read energy (nJ)"]) * 1e3,
          float(row[" Dynamic write energy (nJ)"]) * 1e3,
          float(row[" Standby leakage per bank(mW)"]),
          float(row[" Area (mm2)"]) * 1e6)


def sweep(cacti_dir: str, cfg_path: str) -> None:
  cfg_text = Path(cfg_path).read_text()
  OUT.parent.mkdir(parents=True, exist_ok=True)
  with open(OUT, "w", newline="") as f:
    out = csv.writer(f)
    out.writerow(FIELDS)
    for node in NODES:
      for w in WIDTHS:
        for d in DEPTHS:
          if w * d > 2 ** 24:
            continue
          r = run_cacti(cacti_dir, cfg_text, w, d, node)
          if r is not None:
            out.writerow((node, w, d) + tuple(f"{v:.6g}" for v in r))


def features(lw, ld):
  """Cubic monomials of (log2 width, log2 depth), constant first."""
  cols = []
  for i in range(4):
    for j in range(i + 1):
      cols.append(lw ** (i - j) * ld ** j)
  return np.stack(cols, -1)


def derivative_features(lw, ld):
  """d(monomials)/d(log2 width) and d/d(log2 depth)."""
  dx, dz = [], []
  for i in range(4):
    for j in range(i + 1):
      p, q = i - j, j
      dx.append(p * lw ** max(p - 1, 0) * ld ** q if p else 0.0 * lw)
      dz.append(q * lw ** p * ld ** max(q - 1, 0) if q else 0.0 * lw)
  return np.stack(dx, -1), np.stack(dz, -1)


def monotone_lstsq(a, y):
  """Least squares ``a c ~ y`` with the fitted surface non-decreasing in
  width and depth over the fitted region (a small quadratic programme)."""
  from scipy.optimize import minimize
  gx, gz = np.meshgrid(np.linspace(5, 10, 21), np.linspace(6, 16, 41))
  keep = gx + gz <= 24.0
  dx, dz = derivative_features(gx[keep], gz[keep])
  g = np.concatenate([dx, dz])
  c0, *_ = np.linalg.lstsq(a, y, rcond=None)
  res = minimize(lambda c: np.sum((a @ c - y) ** 2), c0,
                 jac=lambda c: 2.0 * a.T @ (a @ c - y), method="SLSQP",
                 constraints=[{"type": "ineq", "fun": lambda c: g @ c,
                               "jac": lambda c: g}],
                 options={"maxiter": 1000, "ftol": 1e-12})
  return res.x


def fit() -> None:
  with open(OUT) as f:
    rows = [{k: float(v) for k, v in r.items()} for r in csv.DictReader(f)]
  data = {(int(r["tech_nm"]), int(r["width"]), int(r["depth"])): r
          for r in rows}
  ref = [r for r in rows if r["tech_nm"] == 45]
  lw = np.log2([r["width"] for r in ref])
  ld = np.log2([r["depth"] for r in ref])
  a = features(lw, ld)
  print("# Cubic fits at 45 nm, log(y) = c . monomials(log2 w, log2 d)")
  for key in ("read_pj", "write_pj", "leak_mw", "area_um2"):
    y = np.log([r[key] for r in ref])
    c = monotone_lstsq(a, y)
    ratio = np.exp(a @ c - y)
    print(f"{key.upper()} = ({', '.join(f'{v:.6g}' for v in c)})")
    rms = np.sqrt(np.mean(np.log(ratio) ** 2))
    print(f"#   {len(y)} points: rms log error {rms:.3f}, "
          f"fit/CACTI {ratio.min():.2f}..{ratio.max():.2f}")
  print("# Per-node factors, median ratio to 45 nm: energy, leakage, area")
  for node in NODES:
    rs = [[data[(node, int(r["width"]), int(r["depth"]))][k] / r[k]
           for k in ("read_pj", "write_pj", "leak_mw", "area_um2")]
          for r in ref if (node, int(r["width"]), int(r["depth"])) in data]
    if not rs:
      continue
    m = np.median(np.asarray(rs), axis=0)
    print(f"({node}, {np.sqrt(m[0] * m[1]):.4g}, {m[2]:.4g}, {m[3]:.4g}),"
          f"  # {len(rs)} sizes")


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--run", action="store_true")
  p.add_argument("--cacti", help="directory holding the cacti binary")
  p.add_argument("--cfg", help="base CACTI configuration file")
  args = p.parse_args()
  if args.run:
    sweep(args.cacti, args.cfg)
  fit()


if __name__ == "__main__":
  main()
