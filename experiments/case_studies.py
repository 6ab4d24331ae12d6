"""The Timeloop paper's case studies, reproduced with ``jaxloop.sweep``.

    python experiments/case_studies.py dataflow  [--budget N] [--networks ...]
    python experiments/case_studies.py memory    [--budget N]
    python experiments/case_studies.py technology [--budget N]

* ``dataflow``: eyeriss_like (row stationary), simba_like, simple weight-
  and output-stationary (example_designs/top.yaml.jinja2) on AlexNet,
  VGG-16, ResNet-18, MobileNetV3 and a GPT-2 block (its first six
  layer_shapes/gpt2 layers: QKV, projection, the two attention GEMMs, the
  two MLP GEMMs): network energy and cycles per (design, network), and the
  best design per network.  One sweep per network over the template
  variable ``architecture``.
* ``memory``: eyeriss_like on ResNet-18, global buffer and PE scratchpad
  depths swept (4 x 4 x 2 x 2 = 64 points): energy breakdown per level
  against the sizes.
* ``technology``: eyeriss_like on ResNet-18 with its technology node
  swept through the built-in estimator (65 to 7 nm).

Results: experiments/results/case_studies/<study>/ (sweep tables, plots,
``table.md``).  Each mapping search is the sweep's (``--budget``
evaluations per layer and point: short, stated in the outputs).
"""
from __future__ import annotations

import argparse
import csv
import glob
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REF = Path(os.environ.get("JAXLOOP_REFERENCE",
                          ROOT.parent / "shared" / "timeloop-reference"))
OUT = ROOT / "experiments" / "results" / "case_studies"
TEMPLATE = REF / "example_designs" / "top.yaml.jinja2"
DESIGNS = ("eyeriss_like", "simba_like", "simple_weight_stationary",
           "simple_output_stationary")
NETWORKS = {
    "alexnet": ["alexnet"], "vgg16": ["vgg16"], "resnet18": ["resnet18"],
    "mobilenet_v3": ["mobilenet_v3"],
    "gpt2_block": [f"gpt2/{i:03d}.yaml" for i in range(6)],
}


def _layers(network: str) -> list[str]:
  out = []
  for item in NETWORKS[network]:
    p = REF / "layer_shapes" / item
    out += [str(p)] if p.suffix == ".yaml" else sorted(
        glob.glob(str(p / "*.yaml")))
  return out


def _sweep(outdir: Path, layers, grids, budget: int, extra=()) -> None:
  cmd = [sys.executable, "-m", "jaxloop", "sweep", str(TEMPLATE), "--layers",
         *layers, "-o", str(outdir), "--budget", str(budget), *extra]
  for g in grids:
    cmd += ["--grid", g]
  print(" ".join(cmd[1:]), flush=True)
  subprocess.run(cmd, check=True, cwd=ROOT)


def _rows(path: Path) -> list[dict]:
  with open(path) as f:
    return list(csv.DictReader(f))


def dataflow(args) -> None:
  lines = ["| network | design | energy (uJ) | cycles | EDP (J*cycles) |",
           "|---|---|---|---|---|"]
  for net in args.networks:
    out = OUT / "dataflow" / net
    if not (out / "sweep.csv").exists():
      _sweep(out, _layers(net), ["architecture=" + ",".join(DESIGNS)],
             args.budget)
    rows = _rows(out / "sweep.csv")
    best = min(rows, key=lambda r: float(r["edp"]))["architecture"]
    for r in rows:
      mark = " (best EDP)" if r["architecture"] == best else ""
      lines.append(f"| {net} | {r['architecture']}{mark} | "
                   f"{float(r['energy_pj']) * 1e-6:.1f} | "
                   f"{float(r['cycles']):.4g} | {float(r['edp']):.4g} |")
  (OUT / "dataflow" / "table.md").write_text("\n".join(lines) + "\n")
  _dataflow_figure(args.networks)
  print("\n".join(lines))


def _dataflow_figure(networks) -> None:
  from matplotlib.figure import Figure
  fig = Figure(figsize=(11, 4), layout="constrained")
  axes = fig.subplots(1, 2)
  width = 0.8 / len(DESIGNS)
  done = [n for n in networks
          if (OUT / "dataflow" / n / "sweep.csv").exists()]
  for j, design in enumerate(DESIGNS):
    e, c = [], []
    for net in done:
      rows = {r["architecture"]: r
              for r in _rows(OUT / "dataflow" / net / "sweep.csv")}
      base = rows["eyeriss_like"]
      e.append(float(rows[design]["energy_pj"]) / float(base["energy_pj"]))
      c.append(float(rows[design]["cycles"]) / float(base["cycles"]))
    x = [i + j * width for i in range(len(done))]
    axes[0].bar(x, e, width, label=design)
    axes[1].bar(x, c, width, label=design)
  for ax, what in zip(axes, ("energy", "cycles")):
    ax.set_xticks([i + 0.4 - width / 2 for i in range(len(done))], done)
    ax.set_ylabel(f"network {what} / eyeriss_like")
    ax.set_yscale("log")
  axes[0].legend(fontsize=7)
  fig.savefig(OUT / "dataflow" / "dataflow.png", dpi=110)


def memory(args) -> None:
  out = OUT / "memory"
  if not (out / "sweep.csv").exists():
    _sweep(out, _layers("resnet18"), [
        "shared_glb.depth=2048,4096,8192,16384",
        "weights_spad.depth=96,192,384,768", "ifmap_spad.depth=12,24",
        "psum_spad.depth=16,32"], args.budget,
        ["--var", "architecture=eyeriss_like"])
  rows = _rows(out / "sweep.csv")
  _memory_figure(rows, out)


def _memory_figure(rows, out: Path) -> None:
  """Energy per level against the global buffer depth (scratchpads at the
  design's sizes... the smallest of the sweep) and against the weight
  scratchpad depth (global buffer fixed)."""
  from matplotlib.figure import Figure
  levels = [k for k in rows[0] if k.startswith("energy_pj.")]
  fig = Figure(figsize=(11, 4), layout="constrained")
  axes = fig.subplots(1, 2)
  for ax, axis, fixed in (
      (axes[0], "shared_glb.depth", {"weights_spad.depth": "192",
                                     "ifmap_spad.depth": "12",
                                     "psum_spad.depth": "16"}),
      (axes[1], "weights_spad.depth", {"shared_glb.depth": "16384",
                                       "ifmap_spad.depth": "12",
                                       "psum_spad.depth": "16"})):
    sel = sorted((r for r in rows
                  if all(r[k] == v for k, v in fixed.items())),
                 key=lambda r: int(r[axis]))
    x = range(len(sel))
    bottom = [0.0] * len(sel)
    for key in levels:
      h = [float(r[key]) * 1e-6 for r in sel]
      if any(h):
        ax.bar(x, h, bottom=bottom, label=key.split(".", 1)[1])
        bottom = [b + v for b, v in zip(bottom, h)]
    ax.set_xticks(list(x), [r[axis] for r in sel])
    ax.set_xlabel(axis)
    ax.set_ylabel("ResNet-18 energy (uJ)")
  axes[0].legend(fontsize=7)
  fig.savefig(out / "memory.png", dpi=110)


def technology(args) -> None:
  out = OUT / "technology"
  nodes = "65nm,45nm,32nm,22nm,14nm,7nm"
  if not (out / "sweep.csv").exists():
    _sweep(out, _layers("resnet18"), ["eyeriss.technology=" + nodes],
           args.budget, ["--var", "architecture=eyeriss_like"])
  rows = _rows(out / "sweep.csv")
  lines = ["| node | energy (uJ) | cycles | area (mm^2) |", "|---|---|---|---|"]
  for r in rows:
    lines.append(f"| {r['eyeriss.technology']} | "
                 f"{float(r['energy_pj']) * 1e-6:.1f} | "
                 f"{float(r['cycles']):.4g} | "
                 f"{float(r['area_um2']) * 1e-6:.3g} |")
  (out / "table.md").write_text("\n".join(lines) + "\n")
  print("\n".join(lines))


def main() -> int:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("study", choices=("dataflow", "memory", "technology"))
  p.add_argument("--budget", type=int, default=1024,
                 help="evaluations per layer and point")
  p.add_argument("--networks", nargs="+", default=list(NETWORKS),
                 choices=list(NETWORKS))
  args = p.parse_args()
  OUT.mkdir(parents=True, exist_ok=True)
  {"dataflow": dataflow, "memory": memory, "technology": technology}[
      args.study](args)
  return 0


if __name__ == "__main__":
  sys.exit(main())
