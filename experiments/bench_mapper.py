"""Benchmark: the mapper's sustained rate against the engine's, start-up,
time to the best EDP.

Per case (eyeriss_like and simba_like from ../shared/timeloop-reference
example_designs, and a GEMM: a gpt2 layer from layer_shapes on
eyeriss_like), in one run:

* engine: mappings/s of the public evaluator on a large batch in the
  blocked layout, writing into the previous call's output
  (``jaxloop.evaluator(wl, stats=ranked totals, recycle=True)``,
  ``ev(ev.put(m))``), best of ``--repeats`` warm calls;
* mapper: evaluations per search-second of ``jaxloop.search`` for
  ``random`` and ``evolve`` (each the on-device loop, and ``device=False``,
  the host loop: "host" columns), warm (a first short run compiles), ``--seconds`` each,
  Timeloop's rules off, excluding start-up: from the end of the first
  batch to the end of the last, read from the search's log; and their
  ratio to the engine's rate;
* time to best: when the log first shows that run's best EDP (and the
  best EDP itself), for random, evolve and evolve host;
* start-up: ``jaxloop map ... --search random --budget 65536`` (one
  chunk) in a subprocess, cold (``JAXLOOP_CACHE_DIR`` an empty temporary
  folder) and warm (the same folder again): the command's wall time, its
  start-up before the search (summary line) and when its first batch was
  done (compilation included), from the process's start.

Runs with the command line's runtime (:func:`jaxloop.runtime.configure`).
Not a test: ``python experiments/bench_mapper.py [--seconds S]
[--markdown FILE]``.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from jaxloop import runtime  # noqa: E402

if __name__ == "__main__":
  runtime.configure()

import jax  # noqa: E402
import numpy as np  # noqa: E402

import jaxloop  # noqa: E402
from jaxloop.mapper.driver import DEVICE_CHUNK, SEARCH_STATS  # noqa: E402
from jaxloop.validate import case_files  # noqa: E402

REFERENCE = Path(os.environ.get(
    "JAXLOOP_REFERENCE", ROOT.parent / "shared" / "timeloop-reference"))
CASES = {"eyeriss_like": ("example_designs:eyeriss_like", None),
         "simba_like": ("example_designs:simba_like", None),
         "gemm": ("example_designs:eyeriss_like", "gpt2/001.yaml")}
# Searches: (label, method, options).
SEARCHES = (("random", "random", {}),
            ("random-host", "random", {"device": False}),
            ("evolve", "evolve", {}),
            ("evolve-host", "evolve", {"device": False}))
# The searches compared for best EDP and time to best.
ROUTES = ("random", "evolve", "evolve-host")
RULES_OFF = {"victory": 0, "timeout": 0, "search_size": 0}


def case_inputs(name: str) -> list[Path]:
  """The files of a case: the reference case's, its mapping left out,
  with a layer_shapes problem appended (it replaces the case's)."""
  case_name, layer = CASES[name]
  cases = json.loads((REFERENCE / "cases.json").read_text())
  case = next(c for c in cases if c["name"] == case_name)
  files = [f for f in case_files(REFERENCE, case)
           if f.name != case["mapping"] or case["mapping"] == case["input"]]
  if layer:
    files.append(REFERENCE / "layer_shapes" / layer)
  return files


def engine_rate(wl, batch: int, repeats: int) -> float:
  """Mappings/s of the public evaluator, blocked, recycled output, ranked
  totals only (what a search computes)."""
  m = wl.mapspace.sample(np.random.default_rng(0), batch)
  ev = jaxloop.evaluator(wl, stats=SEARCH_STATS, recycle=True)
  x = ev.put(m)
  jax.block_until_ready(ev(x))
  best = float("inf")
  for _ in range(repeats):
    t0 = time.perf_counter()
    jax.block_until_ready(ev(x))
    best = min(best, time.perf_counter() - t0)
  return batch / best


def sustained(result) -> float:
  """Evaluations per second from the end of the first logged batch to the
  end of the last (start-up and the first batch's compilation excluded)."""
  log = result.log
  if len(log) < 2:
    return float("nan")
  dt = log[-1]["time_s"] - log[0]["time_s"]
  return (log[-1]["evaluated"] - log[0]["evaluated"]) / dt if dt > 0 else 0.0


def time_to_best(result) -> tuple[float, float]:
  """``(seconds, best EDP)``: the first log row showing the run's best."""
  if not result.log or result.best_objective is None:
    return float("nan"), float("inf")
  best = result.best_objective[0]
  row = next(r for r in result.log if r["best_objective"] <= best)
  return row["time_s"], best


def startup(files: list[Path], cache: str,
            budget: int = DEVICE_CHUNK) -> tuple[float, float, float]:
  """``(wall s, start-up s, first batch s)`` of ``jaxloop map --search
  random --budget N`` (one chunk of the on-device search) in a fresh
  process with ``JAXLOOP_CACHE_DIR=cache``: the command's wall time, its
  start-up before the search (summary line) and when its first batch was
  done, counted from the process's start (start-up plus progress.csv's
  first ``time_s``)."""
  env = dict(os.environ, JAXLOOP_CACHE_DIR=cache)
  with tempfile.TemporaryDirectory() as out:
    cmd = [sys.executable, "-m", "jaxloop", "map", *map(str, files), "-o",
           out, "--search", "random", "--budget", str(budget), "--victory",
           "0", "--timeout", "0", "--search-size", "0"]
    t0 = time.perf_counter()
    p = subprocess.run(cmd, env=env, capture_output=True, text=True,
                       cwd=ROOT)
    wall = time.perf_counter() - t0
    if p.returncode:
      raise RuntimeError(p.stderr)
    first = float((Path(out) / "progress.csv").read_text().splitlines()[1]
                  .split(",")[0])
  hit = re.search(r"\+ ([0-9.]+) s start-up", p.stdout)
  before = float(hit.group(1)) if hit else float("nan")
  return wall, before, before + first


def run_case(name: str, args) -> dict:
  files = case_inputs(name)
  wl = jaxloop.load(*files)
  row = {"case": name, "engine": engine_rate(wl, args.engine_batch,
                                             args.repeats)}
  chosen = args.searches.split(",")
  for label, method, opts in (s for s in SEARCHES if s[0] in chosen):
    run = lambda **kw: jaxloop.search(wl, method, seed=args.seed,
                                      progress=False, **RULES_OFF, **opts,
                                      **kw)
    run(budget=args.warm_budget)                    # compile
    r = run(time_limit=args.seconds)
    t_best, best = time_to_best(r)
    row[label] = {"rate": sustained(r), "evaluated": r.evaluated,
                  "elapsed": r.elapsed, "time_to_best": t_best,
                  "best_edp": best}
    print(f"  {name} {label}: {row[label]}", flush=True)
  if not args.no_startup:
    with tempfile.TemporaryDirectory() as cache:
      row["cold"] = startup(files, cache)
      row["warm"] = startup(files, cache)
  return row


def table(rows: list[dict], args) -> str:
  """The markdown table of ``rows``."""
  head = ("| case | engine /s | random /s (x engine) | random host /s "
          "(x engine) | evolve /s (x engine) | evolve host /s (x engine) | "
          "best EDP random / evolve / evolve host (J*cycle) | time to best "
          "random / evolve / evolve host (s) | map cold: wall "
          "(before search, first batch) | map warm |")
  lines = [head, "|" + "---|" * (head.count("|") - 1)]
  for r in rows:
    e = r["engine"]
    cell = lambda k: (f"{r[k]['rate']:.3g} ({r[k]['rate'] / e:.2f})"
                      if k in r else "-")
    get = lambda k, f, fmt: format(r[k][f], fmt) if k in r else "-"
    su = lambda k: (f"{r[k][0]:.1f} s ({r[k][1]:.1f} s, {r[k][2]:.1f} s)"
                    if k in r else "-")
    lines.append(
        f"| {r['case']} | {e:.3g} | {cell('random')} | "
        f"{cell('random-host')} | {cell('evolve')} | "
        f"{cell('evolve-host')} | "
        + " / ".join(get(k, "best_edp", ".4g") for k in ROUTES) + " | "
        + " / ".join(get(k, "time_to_best", ".2f") for k in ROUTES)
        + f" | {su('cold')} | {su('warm')} |")
  return "\n".join(lines)


def main():
  ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  ap.add_argument("--cases", default=",".join(CASES))
  ap.add_argument("--seconds", type=float, default=8.0,
                  help="time limit of each timed search")
  ap.add_argument("--engine-batch", type=int, default=2**18)
  ap.add_argument("--repeats", type=int, default=3)
  ap.add_argument("--warm-budget", type=int, default=70_000,
                  help="budget of the compiling run before each timed one")
  ap.add_argument("--seed", type=int, default=0)
  ap.add_argument("--no-startup", action="store_true")
  ap.add_argument("--searches", default=",".join(s[0] for s in SEARCHES),
                  help="labels of the searches to run (default all)")
  ap.add_argument("--json", default="")
  args = ap.parse_args()
  machine = (f"{jax.devices()[0].device_kind} ({jax.default_backend()}) x "
             f"{jax.local_device_count()}, {os.cpu_count()} CPUs, "
             f"{platform.processor() or platform.machine()}, jax "
             f"{jax.__version__}")
  print("machine:", machine, flush=True)
  rows = [run_case(name, args) for name in args.cases.split(",")]
  print()
  print(f"command: python experiments/bench_mapper.py "
        f"{' '.join(sys.argv[1:])}".strip())
  print(f"date: {datetime.date.today().isoformat()}")
  print(f"machine: {machine}")
  print(f"load average (1, 5, 15 min) at the end: "
        f"{', '.join(f'{x:.1f}' for x in os.getloadavg())}")
  print()
  print(table(rows, args))
  if args.json:
    Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
  main()
