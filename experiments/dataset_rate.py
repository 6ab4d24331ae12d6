"""``jaxloop dataset`` rate and memory on the eyeriss_like reference case.

    python experiments/dataset_rate.py [--counts 1000000 10000000]
        [--compression none] [--keep]

Runs the command line (``python -m jaxloop dataset parsed-processed-
input.yaml ERT ART --count N -o TMP``) once per count, each in its own
child process, and reports the rate it prints (rows per second after the
first chunk, which holds the compilation), its wall time, the child's
CPU seconds per row and its peak resident memory (``ru_maxrss``).  The
written files are deleted unless ``--keep``.  Writes
``experiments/results/dataset_rate.md``.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
REFERENCE = Path(os.environ.get(
    "JAXLOOP_REFERENCE", ROOT.parent / "shared" / "timeloop-reference"))
RESULTS = ROOT / "experiments" / "results"
CASE = "example_designs:eyeriss_like"

# A child that runs the command and prints its own children's usage.
_PROBE = ("import json, resource, subprocess, sys;"
          "p = subprocess.run(sys.argv[1:], capture_output=True, text=True);"
          "u = resource.getrusage(resource.RUSAGE_CHILDREN);"
          "print(json.dumps({'rc': p.returncode, 'out': p.stdout,"
          " 'err': p.stderr[-2000:], 'cpu': u.ru_utime + u.ru_stime,"
          " 'maxrss_kb': u.ru_maxrss}))")


def case_files() -> list[str]:
  case = next(c for c in json.loads((REFERENCE / "cases.json").read_text())
              if c["name"] == CASE)
  d = REFERENCE / case["dir"]
  return [str(d / case[k]) for k in ("input", "ert", "art")]


def run(count: int, compression: str, out: Path) -> dict:
  cmd = [sys.executable, "-m", "jaxloop", "dataset", *case_files(),
         "--count", str(count), "-o", str(out), "--quiet",
         "--arch", "eyeriss_like", "--layer", "default_problem",
         "--compression", compression]
  t0 = time.perf_counter()
  probe = subprocess.run([sys.executable, "-c", _PROBE, *cmd], cwd=ROOT,
                         capture_output=True, text=True, check=True)
  wall = time.perf_counter() - t0
  r = json.loads(probe.stdout)
  if r["rc"]:
    raise SystemExit(f"jaxloop dataset failed: {r['err']}")
  rate = re.search(r"; ([0-9.e+]+) rows/s", r["out"])
  size = sum(p.stat().st_size for p in out.glob("*.parquet"))
  return {"count": count, "rate": float(rate.group(1)), "wall_s": wall,
          "cpu_us_per_row": 1e6 * r["cpu"] / count,
          "maxrss_mb": r["maxrss_kb"] / 1024, "bytes_per_row": size / count,
          "line": r["out"].strip().splitlines()[-1]}


def paired(count: int, repeats: int) -> list[tuple[float, float]]:
  """``(dataset rate, stream rate)`` pairs, alternating in this process
  (its devices): ``write_dataset`` against ``jaxloop.stream`` (the same
  draws, only three totals reduced on the device), after a warm-up of
  each.  Rates after the first chunk for the dataset, whole runs for the
  stream (both compiled by the warm-up)."""
  import jaxloop
  from jaxloop.research.dataset import write_dataset
  wl = jaxloop.load(*case_files())
  out = Path(tempfile.mkdtemp(prefix="jaxloop-dataset-"))
  pairs = []
  try:
    for k in range(repeats + 1):
      d = write_dataset(wl, out, count=count, seed=k)
      t0 = time.perf_counter()
      s = jaxloop.stream(wl, count=count, seed=k)
      stream_rate = count / (time.perf_counter() - t0)
      if k:
        pairs.append((d.rows / d.elapsed, stream_rate))
        print(f"dataset {pairs[-1][0]:.3g} rows/s, stream "
              f"{pairs[-1][1]:.3g} mappings/s", flush=True)
  finally:
    shutil.rmtree(out, ignore_errors=True)
  return pairs


def main() -> None:
  ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  ap.add_argument("--counts", type=int, nargs="+",
                  default=[1_000_000, 10_000_000])
  ap.add_argument("--compression", default="none")
  ap.add_argument("--keep", action="store_true")
  ap.add_argument("--paired", type=int, default=0, metavar="N",
                  help="also N paired in-process runs of 2**19 rows: "
                  "dataset against stream")
  args = ap.parse_args()
  pairs = paired(1 << 19, args.paired) if args.paired else []
  rows = []
  for count in args.counts:
    out = Path(tempfile.mkdtemp(prefix="jaxloop-dataset-"))
    try:
      rows.append(run(count, args.compression, out))
    finally:
      if not args.keep:
        shutil.rmtree(out, ignore_errors=True)
    print(json.dumps(rows[-1]), flush=True)
  load = os.getloadavg()
  lines = [
      "# jaxloop dataset: rate and memory", "",
      f"`python experiments/dataset_rate.py --counts "
      f"{' '.join(map(str, args.counts))} --compression "
      f"{args.compression}`, 2026-12-02, eyeriss_like reference case "
      f"({CASE}), {os.cpu_count()} cores, load average after the runs "
      f"{load[0]:.1f} (other jobs share the machine: wall-clock rates are "
      "a lower bound; CPU time per row is the steadier figure).", "",
      "| rows | rate after the first chunk (rows/s) | wall (s) | CPU us/row "
      "| peak RSS (MB) | bytes/row on disk |", "|---|---|---|---|---|---|"]
  for r in rows:
    lines.append(f"| {r['count']:,} | {r['rate']:.3g} | {r['wall_s']:.0f} "
                 f"| {r['cpu_us_per_row']:.2f} | {r['maxrss_mb']:.0f} | "
                 f"{r['bytes_per_row']:.0f} |")
  if pairs:
    ratios = sorted(d / s for d, s in pairs)
    lines += ["", f"Paired in one process ({len(pairs)} alternations of "
              "2**19 rows, `--paired`): dataset / stream rate "
              + ", ".join(f"{r:.2f}" for r in ratios)
              + f" (median {ratios[len(ratios) // 2]:.2f}); rates "
              + "; ".join(f"{d:.3g} vs {s:.3g}" for d, s in pairs) + "."]
  RESULTS.mkdir(parents=True, exist_ok=True)
  (RESULTS / "dataset_rate.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
  main()
