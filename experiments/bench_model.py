"""Benchmark: mappings per second of the exact model vs batch size.

Evaluates random perfect-factorization mappings of the eyeriss_like reference
case (../shared/timeloop-reference) in batches of 1 .. 10**6 through one
jitted, batched model and prints compile time and steady-state throughput,
for batch-first arrays (``evaluate_batch``), for the blocked layout
(``jaxloop.model.blocks.evaluate_blocks``, no transposes), and for the
blocked layout writing into the previous call's output buffers
(``recycle=True``: no fresh memory to zero per call).
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
from jaxloop.model import blocks  # noqa: E402
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


class Recycling:
  """``fn(params, blocks)`` over a recycling evaluator: each call donates
  the previous call's output buffers.  The first call runs twice (without
  and with buffers to recycle: two compilations)."""

  def __init__(self, fn):
    self.fn, self.out = fn, None

  def __call__(self, params, m):
    if self.out is None:
      self.out = self.fn(params, m, None)
    self.out = self.fn(params, m, self.out)
    return self.out


LAYOUTS = {
    "batch": "batch-first arrays in and out (evaluate_batch)",
    "blocks": "the blocked layout (evaluate_blocks), fresh output",
    "recycled": "the blocked layout writing into the previous call's "
                "output (make_block_evaluator(recycle=True))",
}


def batch_evaluator(structure, layout: str = "batch"):
  """``pick(batch) -> (fn, placement, devices, lanes)`` for a layout of
  :data:`LAYOUTS`.

  Batches that split evenly over the local devices run sharded
  (``placement``: the batch sharding to put them with), others on one
  device (``placement`` None).  The blocked layouts
  (:mod:`jaxloop.model.blocks`) take ``lanes`` mappings per block (else
  ``lanes`` is None); their batches of more than one block run sharded,
  the block count padded to a multiple of the device count
  (``to_blocks(..., multiple=devices)``; the padding is timed, not
  counted).
  """
  ndev = jax.local_device_count()
  blocked = layout != "batch"
  recycle = layout == "recycled"
  if blocked:
    single = blocks.make_block_evaluator(structure, recycle=recycle)
    sharded = (shard.make_sharded_evaluator(structure, blocked=True,
                                            recycle=recycle)
               if ndev > 1 else None)
  else:
    single = make_evaluator(structure)
    sharded = shard.make_sharded_evaluator(structure) if ndev > 1 else None
  placement = shard.batch_sharding(shard.batch_mesh()) if ndev > 1 else None
  wrap = Recycling if recycle else (lambda fn: fn)

  def pick(batch):
    lanes = min(blocks.default_lanes(), batch) if blocked else None
    split = (blocks.num_blocks(batch, lanes) > 1 if blocked
             else batch % ndev == 0)
    if sharded is None or not split:
      return wrap(single), None, 1, lanes
    return wrap(sharded), placement, ndev, lanes

  return pick


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
  picks = {layout: batch_evaluator(wl.structure, layout)
           for layout in LAYOUTS}
  ndev = jax.local_device_count()
  print(f"device: {jax.devices()[0].device_kind} ({jax.default_backend()}) "
        f"x {ndev}, {os.cpu_count()} CPUs, "
        f"{platform.processor() or platform.machine()}")
  print(f"case: {args.case}")
  for layout, text in LAYOUTS.items():
    print(f"{layout}: {text}")
  print(f"{'layout':>8} {'batch':>9} {'compile s':>10} {'eval s':>10} "
        f"{'mappings/s':>12}")
  rows = []
  batch = 1
  pool = random_mappings(wl.structure, min(args.max_batch, 10**6),
                         np.random.default_rng(0), outer_weight=6.0)
  while batch <= min(args.max_batch, 10**6):
    for layout, pick in picks.items():
      fn, placement, used, lanes = pick(batch)
      m = jax.tree.map(lambda x: x[:batch], pool)
      if lanes is not None:
        m = blocks.to_blocks(m, lanes, multiple=used)
      m = jax.device_put(m, placement)
      compile_s, best, out = time_calls(fn, (wl.params, m), args.repeats)
      del out, m
      rate = batch / best
      rows.append({"layout": layout, "batch": batch, "compile_s": compile_s,
                   "eval_s": best, "mappings_per_s": rate, "devices": used,
                   "lanes": lanes})
      print(f"{layout:>8} {batch:>9} {compile_s:>10.3f} {best:>10.4f} "
            f"{rate:>12.0f}", flush=True)
    batch *= 10
  if args.json:
    Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
  main()
