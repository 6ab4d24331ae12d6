"""Benchmark: mappings per second of the exact model vs batch size.

Evaluates random perfect-factorization mappings of the eyeriss_like reference
case (../shared/timeloop-reference) in batches of 1 .. 10**6 through one
jitted, batched model and prints compile time and steady-state throughput.
On CPU the batch is sharded over one JAX CPU device per core (as the search
and stream paths do; ``--cpu-devices 1`` for a single device).
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

import jax
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import jaxloop  # noqa: E402,F401
from jaxloop import api  # noqa: E402
from jaxloop import shard  # noqa: E402
from jaxloop.model.evaluate import make_evaluator  # noqa: E402
from jaxloop.validate import case_files  # noqa: E402
from jaxloop.mapspace import random_mappings  # noqa: E402

REFERENCE = Path(os.environ.get(
    "JAXLOOP_REFERENCE", ROOT.parent / "shared" / "timeloop-reference"))


def time_calls(fn, args, repeats: int):
  """``(first call s, best of `repeats` later calls s, last output)``.

  The first call includes compilation (or loading it from the cache).
  """
  t0 = time.perf_counter()
  out = jax.block_until_ready(fn(*args))
  first = time.perf_counter() - t0
  best = float("inf")
  for _ in range(repeats):
    t0 = time.perf_counter()
    out = jax.block_until_ready(fn(*args))
    best = min(best, time.perf_counter() - t0)
  return first, best, out


def batch_evaluator(structure):
  """``pick(batch) -> (fn, placement, devices)``.

  Batches that split evenly over the local devices run sharded
  (``placement``: the batch sharding to put them with), others on one
  device (``placement`` None).
  """
  single = make_evaluator(structure)
  ndev = jax.local_device_count()
  if ndev == 1:
    return lambda batch: (single, None, 1)
  sharded = shard.make_sharded_evaluator(structure)
  placement = shard.batch_sharding(shard.batch_mesh())
  return lambda batch: ((single, None, 1) if batch % ndev
                        else (sharded, placement, ndev))


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("--case", default="example_designs:eyeriss_like")
  ap.add_argument("--max-batch", type=int, default=10**6)
  ap.add_argument("--repeats", type=int, default=3)
  ap.add_argument("--cpu-devices", type=int, default=0,
                  help="JAX CPU devices to shard over (default: one per core)")
  ap.add_argument("--json", default="")
  args = ap.parse_args()
  shard.use_huge_pages()
  shard.use_cpu_cores(args.cpu_devices or None)
  cases = json.loads((REFERENCE / "cases.json").read_text())
  case = next(c for c in cases if c["name"] == args.case)
  wl = api.load(*case_files(REFERENCE, case))
  pick = batch_evaluator(wl.structure)
  ndev = jax.local_device_count()
  print(f"device: {jax.devices()[0].device_kind} ({jax.default_backend()}) "
        f"x {ndev}, {os.cpu_count()} CPUs, "
        f"{platform.processor() or platform.machine()}")
  print(f"case: {args.case}")
  print(f"{'batch':>9} {'compile s':>10} {'eval s':>10} {'mappings/s':>12}")
  rows = []
  batch = 1
  pool = random_mappings(wl.structure, min(args.max_batch, 10**6),
                         np.random.default_rng(0), outer_weight=6.0)
  while batch <= args.max_batch:
    m = jax.tree.map(lambda x: x[:batch], pool) if batch <= 10**6 else None
    fn, placement, used = pick(batch)
    m = jax.device_put(m, placement)
    compile_s, best, _ = time_calls(fn, (wl.params, m), args.repeats)
    rate = batch / best
    rows.append({"batch": batch, "compile_s": compile_s, "eval_s": best,
                 "mappings_per_s": rate, "devices": used})
    print(f"{batch:>9} {compile_s:>10.3f} {best:>10.4f} {rate:>12.0f}")
    batch *= 10
  if args.json:
    Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
  main()
