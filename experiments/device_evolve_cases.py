"""The on-device evolutionary search on the reference mapper cases at short
time limits, against the 60 s host-evolve EDPs of
experiments/results/mapper_vs_timeloop.md.

For each mapper case of ../shared/timeloop-reference/cases.json whose
objective is one metric (the device loop ranks by one metric), warm (a first
run with a small budget compiles): ``search(wl, "evolve", time_limit=T,
victory=0, timeout=0, search_size=0)`` (the cases' ``mapper:`` sections set
``victory_condition`` and ``timeout``, which only the host loop applies) for
each T of ``--times``; prints a markdown table of the best EDP and its ratio
to the 60 s host EDP.

Not a test: ``python experiments/device_evolve_cases.py [--times 2,10]
[--markdown FILE]``.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from jaxloop import runtime  # noqa: E402

if __name__ == "__main__":
  runtime.configure()

import jax  # noqa: E402

from jaxloop import api  # noqa: E402
from jaxloop.mapper import search  # noqa: E402
from jaxloop.mapper.objective import parse_objective  # noqa: E402

REF = Path(os.environ.get("JAXLOOP_REFERENCE",
                          ROOT.parent / "shared" / "timeloop-reference"))
HOST_60S = ROOT / "experiments" / "results" / "mapper_vs_timeloop.md"
RULES_OFF = {"victory": 0, "timeout": 0, "search_size": 0}


def host_edps() -> dict[str, float]:
  """``{case: jaxloop EDP}`` of the 60 s host-evolve table."""
  out = {}
  for line in HOST_60S.read_text().splitlines():
    cells = [c.strip() for c in line.strip("|").split("|")]
    if len(cells) > 6 and re.match(r"^[0-9][0-9.e+-]*$", cells[6]):
      out[cells[0]] = float(cells[6])
  return out


def main():
  ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  ap.add_argument("--times", default="2,10")
  ap.add_argument("--seed", type=int, default=0)
  ap.add_argument("--markdown", default="")
  args = ap.parse_args()
  times = [float(t) for t in args.times.split(",")]
  host = host_edps()
  cases = [c for c in json.loads((REF / "cases.json").read_text())
           if c.get("kind") == "mapper"]
  head = ("| case | 60 s host EDP | " + " | ".join(
      f"device {t:g} s: EDP (x host 60 s), evaluated" for t in times) + " |")
  lines = [head, "|" + "---|" * (head.count("|") - 1)]
  for case in cases:
    d = REF / case["dir"]
    wl = api.load(d / case["input"], d / case["ert"], d / case["art"])
    names = parse_objective(list(wl.spec.mapper.optimization_metrics
                                 if wl.spec.mapper else ()) or "edp")
    if len(names) != 1 or names[0] != "edp":
      continue
    run = lambda **kw: search(wl, "evolve", seed=args.seed, progress=False,
                              device=True, **RULES_OFF, **kw)
    try:
      run(budget=20_000)                                # compile
    except ValueError as e:           # e.g. max_temporal_loops in the file
      lines.append(f"| {case['name']} | "
                   f"{host.get(case['name'], float('nan')):.4g} | "
                   + " | ".join(["host loop only"] * len(times)) + " |")
      print(f"  {case['name']}: {e}", flush=True)
      continue
    cells = []
    for t in times:
      r = run(time_limit=t)
      e = float(r.best_stats.edp)
      ref = host.get(case["name"], float("nan"))
      cells.append(f"{e:.4g} ({e / ref:.3f}), {r.evaluated:,}")
      print(f"  {case['name']} {t:g} s: {e:.4g} vs {ref:.4g}", flush=True)
    lines.append(f"| {case['name']} | {host.get(case['name'], 'nan'):.4g} | "
                 + " | ".join(cells) + " |")
  text = "\n".join(
      [f"command: python experiments/device_evolve_cases.py "
       f"{' '.join(sys.argv[1:])}".strip(),
       f"date: {datetime.date.today().isoformat()}",
       f"devices: {jax.local_device_count()} x {jax.devices()[0].device_kind}"
       f", load average {', '.join(f'{x:.1f}' for x in os.getloadavg())}",
       "", *lines])
  print(text)
  if args.markdown:
    Path(args.markdown).write_text(text + "\n")


if __name__ == "__main__":
  main()
