"""The proof search on the Timeloop reference mapper cases.

For each ``mapper`` case of ``cases.json`` (or those named): the default
mapper's result after 10 s (``search(workload, time_limit=10)``, what
``jaxloop map CASE --time-limit 10`` runs: the files' algorithm and
optimization metrics), then the proof search with a time limit, and its
evidence: time, evaluated and pruned counts per rule, whether the optimum
is certified, the optimum (or the best found, the lower bound and the gap).

Usage:
  python experiments/proof_cases.py [--limit 600] [--default-time 10]
                                    [--cases NAME ...] [--append]
Writes experiments/results/proof_cases.md (rewritten after every case;
``--append`` keeps the rows already there, and the limit of each run is in
its rows' ``limit s`` column).
Runs with one JAX CPU device per core, as the command line does.
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from jaxloop import runtime

REF = Path(os.environ.get(
    "JAXLOOP_REFERENCE",
    Path(__file__).resolve().parents[1].parent / "shared" /
    "timeloop-reference"))
OUT = Path(__file__).resolve().parent / "results" / "proof_cases.md"
HEAD = ("| case | objective | mapspace | limit s | proof time s | evaluated | "
        "pruned: bound | capacity | unit_loops | innermost_order | "
        "top_level | "
        "unexplored | certified | proof EDP | proof energy uJ | proof cycles "
        "| lower bound (1st metric) | gap | default 10 s: method | EDP | "
        "energy uJ | cycles | default / proof EDP |")


def run_case(case: dict, limit: float, default_time: float) -> str:
  from jaxloop import api
  from jaxloop.mapper import search
  d = REF / case["dir"]
  wl = api.load(d / case["input"], d / case["ert"], d / case["art"])
  base = search(wl, time_limit=default_time, progress=False)
  t0 = time.perf_counter()
  r = search(wl, "proof", time_limit=limit, progress=False)
  took = time.perf_counter() - t0
  ev = r.evidence
  p = ev["pruned"]
  b, s = base.best_stats, r.best_stats
  e = lambda st: f"{float(st.energy_total) * 1e-6:.6g}" if st else "-"
  c = lambda st: f"{float(st.cycles):.0f}" if st else "-"
  x = lambda st: f"{float(st.edp):.6g}" if st else "-"
  ratio = (f"{float(b.edp) / float(s.edp):.4f}" if b and s else "-")
  lower = "-" if r.lower_bound is None else f"{r.lower_bound[0]:.6g}"
  return (f"| {case['name']} | {','.join(r.objective)} | "
          f"{float(ev['space']):.3g} | {limit:g} | {took:.1f} | "
          f"{ev['evaluated']:,} | "
          f"{float(p['bound']):.3g} | {float(p['capacity']):.3g} | "
          f"{float(p['unit_loops']):.3g} | {float(p['innermost_order']):.3g}"
          f" | {float(p['top_level']):.3g} | {float(ev['unexplored']):.3g} | "
          f"{'yes' if r.certified else 'NO'} | {x(s)} | {e(s)} | {c(s)} | "
          f"{lower} | {r.gap:.3g} | {base.method} | {x(b)} | {e(b)} | "
          f"{c(b)} | {ratio} |")


def write(rows: list[str], args) -> None:
  OUT.parent.mkdir(parents=True, exist_ok=True)
  OUT.write_text(
      "# The proof search on the reference mapper cases\n\n"
      f"`python experiments/proof_cases.py --limit LIMIT "
      f"--default-time {args.default_time:g} --cases ...`, 2026-12-02, the "
      "2-core "
      "machine shared with other agents' jobs (times are noisy: several "
      "other processes ran at once), one JAX CPU device per core.\n\n"
      "Counts are mappings of the whole constrained mapspace: evaluated by "
      "the exact model, pruned by each rule (docs/proof-search.md), or "
      "unexplored when the time limit ended the run (then the result is "
      "not certified: `lower bound` holds for every unexplored mapping and "
      "`gap` = best / lower bound - 1 on the first metric).  EDP in "
      "J*cycles.  `default 10 s` is `search(workload, time_limit=10)`, "
      "what `jaxloop map CASE --time-limit 10` runs (the files' algorithm "
      "and metrics).\n\n" + HEAD + "\n|" + "---|" * HEAD.count(" | ")
      + "---|\n" + "\n".join(rows) + "\n")


def old_rows() -> list[str]:
  """The table rows of the results file (none when absent)."""
  if not OUT.is_file():
    return []
  lines = OUT.read_text().splitlines()
  return [l for l in lines if l.startswith("| ") and not l.startswith(
      "| case |")]


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("--limit", type=float, default=600.0)
  ap.add_argument("--default-time", type=float, default=10.0)
  ap.add_argument("--cases", nargs="*", default=None)
  ap.add_argument("--append", action="store_true")
  args = ap.parse_args()
  runtime.use_cpu_cores()
  runtime.use_compilation_cache()
  cases = [c for c in json.loads((REF / "cases.json").read_text())
           if c["kind"] == "mapper"]
  if args.cases:
    by_name = {c["name"]: c for c in cases}
    cases = [by_name[n] for n in args.cases]
  rows = old_rows() if args.append else []
  print(HEAD, flush=True)
  for case in cases:
    rows.append(run_case(case, args.limit, args.default_time))
    print(rows[-1], flush=True)
    write(rows, args)


if __name__ == "__main__":
  main()
