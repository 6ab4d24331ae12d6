"""Benchmark: mappings per second of the exact model vs batch size.

Evaluates random perfect-factorization mappings of a reference case
(default eyeriss_like, ../shared/timeloop-reference) in batches of 1 ..
10**6 through the public evaluator (``jaxloop.evaluator``) and prints
compile time and steady-state throughput for three inputs: batch-first
arrays (``ev(mappings)``), the blocked layout (``ev(ev.put(mappings))``)
and the blocked layout writing into the previous call's output buffers
(``jaxloop.evaluator(wl, recycle=True)``).  Runs with the command line's
runtime (:func:`jaxloop.runtime.configure`: one JAX CPU device per core,
huge pages, wide vectors), like ``jaxloop``.
Not a test: run ``python experiments/bench_model.py [--max-batch N]``.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
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
from jaxloop.mapspace import random_mappings  # noqa: E402
from jaxloop.validate import case_files  # noqa: E402

REFERENCE = Path(os.environ.get(
    "JAXLOOP_REFERENCE", ROOT.parent / "shared" / "timeloop-reference"))


def time_calls(fn, args, repeats: int):
  """``(first call s, best of `repeats` later calls s)``.

  The first call includes compilation (or loading it from the cache).
  """
  t0 = time.perf_counter()
  jax.block_until_ready(fn(*args))
  first = time.perf_counter() - t0
  best = float("inf")
  for _ in range(repeats):
    t0 = time.perf_counter()
    jax.block_until_ready(fn(*args))
    best = min(best, time.perf_counter() - t0)
  return first, best


LAYOUTS = {
    "batch": "batch-first arrays in and out: ev(mappings)",
    "blocks": "the blocked layout, fresh output: ev(ev.put(mappings))",
    "recycled": "the blocked layout writing into the previous call's "
                "output: jaxloop.evaluator(wl, recycle=True)",
}


def layout_call(wl, layout: str, mappings, lanes=None):
  """``(fn, args)``: one timed call of the public evaluator in ``layout``.
  """
  ev = jaxloop.evaluator(wl, recycle=layout == "recycled")
  if layout == "batch":
    return ev, (jax.device_put(mappings),)
  return ev, (ev.put(mappings, lanes),)


def load_case(name: str):
  cases = json.loads((REFERENCE / "cases.json").read_text())
  case = next(c for c in cases if c["name"] == name)
  return jaxloop.load(*case_files(REFERENCE, case))


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("--case", default="example_designs:eyeriss_like")
  ap.add_argument("--max-batch", type=int, default=10**6)
  ap.add_argument("--repeats", type=int, default=3)
  ap.add_argument("--layouts", default=",".join(LAYOUTS))
  ap.add_argument("--json", default="")
  args = ap.parse_args()
  wl = load_case(args.case)
  ndev = jax.local_device_count()
  print(f"device: {jax.devices()[0].device_kind} ({jax.default_backend()}) "
        f"x {ndev}, {os.cpu_count()} CPUs, "
        f"{platform.processor() or platform.machine()}")
  print(f"case: {args.case}")
  layouts = args.layouts.split(",")
  for layout in layouts:
    print(f"{layout}: {LAYOUTS[layout]}")
  print(f"{'layout':>8} {'batch':>9} {'compile s':>10} {'eval s':>10} "
        f"{'mappings/s':>12}")
  rows = []
  top = min(args.max_batch, 10**6)
  pool = random_mappings(wl.structure, top, np.random.default_rng(0),
                         outer_weight=6.0)
  batch = 1
  while batch <= top:
    for layout in layouts:
      m = jax.tree.map(lambda x: x[:batch], pool)
      fn, call_args = layout_call(wl, layout, m)
      compile_s, best = time_calls(fn, call_args, args.repeats)
      del call_args, fn
      rate = batch / best
      rows.append({"layout": layout, "batch": batch, "compile_s": compile_s,
                   "eval_s": best, "mappings_per_s": rate, "devices": ndev})
      print(f"{layout:>8} {batch:>9} {compile_s:>10.3f} {best:>10.4f} "
            f"{rate:>12.0f}", flush=True)
    batch *= 10
  if args.json:
    Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
  main()
