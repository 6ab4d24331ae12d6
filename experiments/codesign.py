"""Co-design by gradient against a grid sweep at equal wall time.

    python experiments/codesign.py [--budget N] [--layers 00 01 05 06]

eyeriss_like (example_designs/top.yaml.jinja2) on ResNet-18 layers; knobs:
the global buffer depth (1024..65536) and the weight scratchpad depth
(16..1024).  First the grid (powers of two: 7 x 7 = 49 points, each layer
mapped with the sweep's search, ``--budget`` evaluations per point and
layer) is timed; then :func:`jaxloop.sweep.codesign.codesign` runs with the
grid's wall time as its limit (descent, then the final point's search with
the same per-layer budget).  Both report exact network EDP on legal
mappings.  Writes experiments/results/codesign.md and codesign.png.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
REF = Path(os.environ.get("JAXLOOP_REFERENCE",
                          ROOT.parent / "shared" / "timeloop-reference"))
OUT = ROOT / "experiments" / "results"
GLB = [2 ** k for k in range(10, 17)]
WSPAD = [2 ** k for k in range(4, 11)]


def main() -> int:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--budget", type=int, default=1024)
  p.add_argument("--layers", nargs="+", default=["00", "01", "05", "06"])
  p.add_argument("--descent-seconds", type=float, default=None,
                 help="time limit of the descent (default: 0.8x the grid's "
                 "wall time, i.e. equal wall time overall)")
  p.add_argument("--tag", default="", help="suffix of the output files")
  args = p.parse_args()
  import jax
  from jaxloop.sweep import SearchSettings, make_points, parse_grid
  from jaxloop.sweep.codesign import codesign
  from jaxloop.sweep.layers import network_layers
  from jaxloop.sweep.run import run_sweep
  files = [str(REF / "example_designs" / "top.yaml.jinja2")]
  layers = network_layers([str(REF / "layer_shapes" / "resnet18" /
                               f"{n}.yaml") for n in args.layers])
  base = {"architecture": "eyeriss_like"}
  points = [{**base, **pt} for pt in make_points([
      parse_grid("shared_glb.depth=" + ",".join(map(str, GLB))),
      parse_grid("weights_spad.depth=" + ",".join(map(str, WSPAD)))])]
  t0 = time.perf_counter()
  grid = run_sweep(files, points, layers, SearchSettings(budget=args.budget))
  t_grid = time.perf_counter() - t0
  best = min((r for r in grid.points if r["valid"]), key=lambda r: r["edp"])
  print(f"grid: {len(points)} points in {t_grid:.0f} s, best EDP "
        f"{best['edp']:.6g} at glb {best['shared_glb.depth']}, wspad "
        f"{best['weights_spad.depth']}", flush=True)
  t1 = time.perf_counter()
  cd = codesign(files, layers, {"shared_glb.depth": (GLB[0], GLB[-1]),
                                "weights_spad.depth": (WSPAD[0], WSPAD[-1])},
                point=base, steps=10_000, time_limit=(0.8 * t_grid if args.descent_seconds is None
                            else args.descent_seconds),
                final_budget=args.budget, progress=lambda h: print(
                    f"  step {h['step']}: {h['knobs']} EDP {h['edp']:.6g} "
                    f"({h['seconds']:.0f} s)", flush=True))
  t_cd = time.perf_counter() - t1
  print(f"co-design: {t_cd:.0f} s, EDP {cd.edp:.6g} at {cd.knobs}")
  _write(args, layers, grid, best, t_grid, cd, t_cd, len(jax.devices()))
  return 0


def _grid_edp(grid, glb, wspad):
  for r in grid.points:
    if r["shared_glb.depth"] == glb and r["weights_spad.depth"] == wspad:
      return r["edp"] if r["valid"] else math.inf
  return math.inf


def _write(args, layers, grid, best, t_grid, cd, t_cd, ndev) -> None:
  from matplotlib.figure import Figure
  import numpy as np
  z = np.array([[_grid_edp(grid, g, w) for g in GLB] for w in WSPAD])
  fig = Figure(figsize=(6.4, 4.8), layout="constrained")
  ax = fig.add_subplot()
  im = ax.imshow(np.log10(z), origin="lower", cmap="viridis",
                 extent=(math.log2(GLB[0]) - .5, math.log2(GLB[-1]) + .5,
                         math.log2(WSPAD[0]) - .5, math.log2(WSPAD[-1]) + .5))
  fig.colorbar(im, ax=ax, label="log10 network EDP (grid)")
  xs = [math.log2(h["theta"]["shared_glb.depth"]) for h in cd.history]
  ys = [math.log2(h["theta"]["weights_spad.depth"]) for h in cd.history]
  ax.plot(xs, ys, "w.-", label="co-design trajectory")
  ax.plot([math.log2(cd.knobs["shared_glb.depth"])],
          [math.log2(cd.knobs["weights_spad.depth"])], "r*", ms=14,
          label="co-design result")
  ax.plot([math.log2(best["shared_glb.depth"])],
          [math.log2(best["weights_spad.depth"])], "ws", ms=9, mfc="none",
          label="grid best")
  ax.set_xlabel("log2 shared_glb.depth")
  ax.set_ylabel("log2 weights_spad.depth")
  ax.legend(fontsize=7)
  fig.savefig(OUT / f"codesign{args.tag}.png", dpi=110)
  names = ", ".join(f"{l.name} (x{l.repeat})" for l in layers)
  text = f"""# Co-design by gradient vs grid sweep (2026-12-02)

Command: `python experiments/codesign.py {' '.join(sys.argv[1:])}`
(2-core machine shared with other jobs: wall times are noisy; {ndev} JAX
device(s) in the process).

eyeriss_like, ResNet-18 layers {names}; knobs `shared_glb.depth` in
[{GLB[0]}, {GLB[-1]}] and `weights_spad.depth` in [{WSPAD[0]}, {WSPAD[-1]}];
energies and areas from the built-in estimator.  Objective: network EDP
(repeat-weighted energy x cycles), exact model, legal mappings.

| method | wall time (s) | network EDP (J*cycles) | energy (uJ) | cycles | point |
|---|---|---|---|---|---|
| grid, {len(grid.points)} points, {args.budget} evaluations per point and layer | {t_grid:.0f} | {best['edp']:.6g} | {best['energy_pj'] * 1e-6:.1f} | {best['cycles']:.6g} | glb {best['shared_glb.depth']}, wspad {best['weights_spad.depth']} |
| co-design (descent limited to {'0.8x the grid time' if args.descent_seconds is None else f'{args.descent_seconds:.0f} s'}, then a {args.budget}-evaluation search per layer) | {t_cd:.0f} | {cd.edp:.6g} | {cd.energy_pj * 1e-6:.1f} | {cd.cycles:.6g} | glb {cd.knobs['shared_glb.depth']}, wspad {cd.knobs['weights_spad.depth']} |

Co-design / grid EDP: {cd.edp / best['edp']:.3f}.  Roundings of the
descent (exact network EDP of the rounded point and mappings):

| step | s | glb depth | wspad depth | EDP |
|---|---|---|---|---|
""" + "".join(f"| {h['step']} | {h['seconds']:.0f} | {h['knobs']['shared_glb.depth']} | {h['knobs']['weights_spad.depth']} | {h['edp']:.6g} |\n" for h in cd.history) + f"""
![grid EDP and the co-design trajectory](codesign{args.tag}.png)
"""
  (OUT / f"codesign{args.tag}.md").write_text(text)
  (OUT / f"codesign{args.tag}.json").write_text(json.dumps({
      "grid_seconds": t_grid, "grid_best": best, "codesign_seconds": t_cd,
      "codesign": {"knobs": cd.knobs, "edp": cd.edp, "layers": cd.layers,
                   "history": cd.history}}, indent=1, default=str))


if __name__ == "__main__":
  sys.exit(main())
