"""jaxloop's evolutionary mapper vs Timeloop's mapper on the reference cases.

For each ``mapper`` case of the Timeloop reference set, runs the evolve
search (``search(workload, "evolve")``, the case's optimization metrics)
for a fixed time and compares the best mapping's EDP and energy with those
of Timeloop's ``timeloop-mapper.map.yaml`` (evaluated with jaxloop's model,
which reproduces Timeloop's numbers exactly).

Usage: python experiments/mapper_vs_timeloop.py [--time 60] [--seed 0]
Writes experiments/results/mapper_vs_timeloop.md.
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from jaxloop import api
from jaxloop.mapper import search
from jaxloop.validate import case_files

REF = Path(os.environ.get(
    "JAXLOOP_REFERENCE",
    Path(__file__).resolve().parents[1].parent / "shared" /
    "timeloop-reference"))


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("--time", type=float, default=60.0)
  ap.add_argument("--seed", type=int, default=0)
  ap.add_argument("--batch", type=int, default=1024)
  args = ap.parse_args()
  cases = [c for c in json.loads((REF / "cases.json").read_text())
           if c["kind"] == "mapper"]
  rows = []
  head = ("| case | objective | mapspace | evaluated | legal | "
          "TL EDP | jaxloop EDP | EDP ratio | TL energy uJ | "
          "jaxloop energy uJ | TL cycles | jaxloop cycles |")
  print(head)
  for case in cases:
    d = REF / case["dir"]
    wl = api.load(d / case["input"], d / case["ert"], d / case["art"])
    ref = api.load(*case_files(REF, case)).evaluate()   # Timeloop's mapping
    # objective: the case's optimization_metrics (else edp).
    r = search(wl, "evolve", time_limit=args.time, seed=args.seed,
               batch=args.batch, progress=False)
    best = r.best_stats
    ref_e, ref_c, e, c = (float(ref.energy_total), float(ref.cycles),
                          float(best.energy_total), float(best.cycles))
    ref_edp, edp = float(ref.edp), float(best.edp)
    row = (f"| {case['name']} | {','.join(r.objective)} | "
           f"{float(r.mapspace_size['total']):.3g} | {r.evaluated} | "
           f"{r.legal} | {ref_edp:.4g} | {edp:.4g} | {edp / ref_edp:.3f} | "
           f"{ref_e * 1e-6:.4g} | {e * 1e-6:.4g} | {ref_c:.0f} | {c:.0f} |")
    print(row, flush=True)
    rows.append(row)
  out = Path(__file__).resolve().parent / "results" / "mapper_vs_timeloop.md"
  out.parent.mkdir(parents=True, exist_ok=True)
  out.write_text(
      f"# jaxloop evolve search ({args.time:g} s, seed {args.seed}, batch "
      f"{args.batch}, CPU) vs Timeloop mapper\n\n"
      "TL = Timeloop's reference map.yaml evaluated with jaxloop's model. "
      "EDP in J*cycles. Ratio < 1: jaxloop found a better mapping for the "
      "case's objective (lexicographic delay,energy cases compare delay "
      "first).\n\n" + head + "\n|" + "---|" * 12 + "\n" + "\n".join(rows)
      + "\n")


if __name__ == "__main__":
  main()
