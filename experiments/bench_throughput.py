"""Benchmark: throughput and memory of batched and streamed evaluation.

Two modes (not tests; nothing here is timed in the test suite):

* batch sweep (default): for eyeriss_like, simba_like and a GEMM (the
  gpt2 layer 000 shape C=1024 M=3072 P=256 on the eyeriss_like
  architecture, built in memory), mappings/s of the public evaluator
  (``jaxloop.evaluator``) vs batch size 1, 10, .. ``--max-batch``
  (mappings drawn on the device from each mapspace, ``Mapspace.draw``),
  compile time, peak host RSS, device memory where the backend reports it
  (``memory_stats()``; the CPU backend reports none), and the device; each
  batch size of 10^4 or more in each layout of ``bench_model.LAYOUTS``
  (batch-first, blocked, blocked and recycled).  ``--stream N`` adds a
  streamed run of N mappings per case (``jaxloop.streaming.stream(wl,
  count=N)``: drawn on the device, model + on-device top-k/histogram
  reduction, chunk ``--chunk``; its compile column is the first chunk's
  wall time, compilation included).
* ``--rss N``: host memory of one stream of N on-device mappings
  (``--rss-case``, default eyeriss_like): RSS after the first chunk vs
  after 10^5, 10^6, .. N.

The command line's runtime applies (``jaxloop.runtime``: one CPU device per
core, ``JAXLOOP_CPU_DEVICES=1`` for one; huge pages; wide vectors).

    python experiments/bench_throughput.py --max-batch 100000 --json out.json
    python experiments/bench_throughput.py --rss 10000000
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import resource
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
from jaxloop.streaming import stream  # noqa: E402
from jaxloop.structure import build_params, build_structure  # noqa: E402
from bench_model import (LAYOUTS, layout_call, load_case as  # noqa: E402
                         load_reference_case, time_calls)

GEMM = {"C": 1024, "M": 3072, "P": 256}     # layer_shapes/gpt2/000.yaml


def peak_rss_mb() -> float:
  """Peak resident set size of this process (MiB; Linux reports KiB)."""
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_rss_mb() -> float:
  with open("/proc/self/statm") as f:
    return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def device_memory() -> dict:
  stats = jax.devices()[0].memory_stats() or {}
  return {k: stats[k] for k in ("bytes_in_use", "peak_bytes_in_use",
                                "bytes_limit") if k in stats}


def load_case(name: str) -> jaxloop.Workload:
  """A reference case, or ``gemm``: the GEMM shape on eyeriss_like with no
  mapspace constraints."""
  if name != "gemm":
    return load_reference_case(name)
  wl = load_reference_case("example_designs:eyeriss_like")
  prob = wl.spec.problem
  bounds = tuple(GEMM.get(d, 1) for d in prob.dims)
  spec = dataclasses.replace(
      wl.spec, problem=dataclasses.replace(prob, bounds=bounds),
      constraints=())
  structure = build_structure(spec)
  return jaxloop.Workload(spec=spec, structure=structure,
                          params=build_params(spec, structure))


def _valid(out) -> int:
  """Valid mappings in an evaluator's output (batch-first or blocked)."""
  valid = out.field("valid") if isinstance(out, jaxloop.Blocked) else out.valid
  return int(np.asarray(valid).sum())


def sweep(name: str, args) -> list[dict]:
  wl = load_case(name)
  draw = jax.jit(wl.mapspace.draw, static_argnums=1)
  rows, batch = [], 1
  while batch <= args.max_batch:
    with jax.enable_x64(True):
      m = jax.block_until_ready(draw(jax.random.PRNGKey(0), batch))
    for layout in LAYOUTS:
      if layout != "batch" and batch < 10**4:
        continue     # blocks and batch-first agree at small batches
      fn, call_args = layout_call(wl, layout, m)
      compile_s, best = time_calls(fn, call_args, args.repeats)
      valid = _valid(fn(*call_args))
      del fn, call_args
      row = {"case": name, "mode": layout, "batch": batch,
             "devices": jax.local_device_count(),
             "compile_s": compile_s, "eval_s": best,
             "mappings_per_s": batch / best, "valid": valid,
             "peak_rss_mb": peak_rss_mb(), "device_memory": device_memory()}
      rows.append(row)
      _print(row)
    del m
    batch *= 10
  if args.stream:
    t0 = time.perf_counter()    # warm-up chunk: compiles the chunk function
    stream(wl, count=args.chunk, seed=0, chunk=args.chunk)
    compile_s = time.perf_counter() - t0
    res = stream(wl, count=args.stream, seed=1, chunk=args.chunk)
    row = {"case": name, "mode": "stream", "batch": args.stream,
           "chunk": args.chunk, "compile_s": compile_s,
           "eval_s": res.elapsed, "mappings_per_s": res.rate,
           "valid": res.valid, "peak_rss_mb": peak_rss_mb(),
           "device_memory": device_memory(),
           "best_edp": res.best["edp"][0]}
    rows.append(row)
    _print(row)
  return rows


def _print(row):
  print(f"{row['case']:>32} {row['mode']:>8} {row['batch']:>9} "
        f"{row['compile_s']:>9.2f} {row['eval_s']:>9.3f} "
        f"{row['mappings_per_s']:>11.0f} {row['peak_rss_mb']:>9.0f} "
        f"{row['device_memory'].get('peak_bytes_in_use', '-')!s:>10}",
        flush=True)


def rss_run(args) -> dict:
  """One stream of ``args.rss`` mappings; RSS at decades of the count."""
  wl = load_case(args.rss_case)
  print(f"case: {args.rss_case}", flush=True)
  probes = []
  nxt = [args.chunk]
  t0 = time.perf_counter()
  seen = [0]

  def on_chunk(done, rows):
    seen[0] += rows
    if seen[0] >= nxt[0] or seen[0] == args.rss:
      probes.append({"mappings_dispatched": seen[0],
                     "seconds": round(time.perf_counter() - t0, 1),
                     "rss_mb": round(current_rss_mb(), 1),
                     "peak_rss_mb": round(peak_rss_mb(), 1)})
      print(probes[-1], flush=True)
      nxt[0] = 10 ** (len(str(seen[0])))
      if nxt[0] <= seen[0]:
        nxt[0] *= 10

  one = stream(wl, count=args.chunk, seed=2, chunk=args.chunk)
  first = peak_rss_mb()
  print(f"single chunk ({one.evaluated} mappings): peak RSS {first:.0f} MiB",
        flush=True)
  t0 = time.perf_counter()
  res = stream(wl, count=args.rss, seed=2, chunk=args.chunk,
               on_chunk=on_chunk)
  last = peak_rss_mb()
  out = {"mode": "rss", "case": args.rss_case, "count": args.rss, "chunk": args.chunk,
         "evaluated": res.evaluated, "valid": res.valid,
         "elapsed_s": res.elapsed, "mappings_per_s": res.rate,
         "compiles": res.compiles, "single_chunk_peak_rss_mb": first,
         "final_peak_rss_mb": last, "growth_mb": last - first,
         "probes": probes, "best_edp": res.best["edp"][0]}
  print(f"stream of {res.evaluated:.3g} mappings ({res.valid} valid) in "
        f"{res.elapsed:.0f} s = {res.rate:.0f}/s, {res.compiles} compile(s)")
  print(f"peak RSS after the first chunk: {first:.0f} MiB; after all: "
        f"{last:.0f} MiB (growth {last - first:+.0f} MiB)")
  if args.rss < 10**9:
    print(f"note: {args.rss:.0e} mappings, not 10^9: at {res.rate:.0f}/s a "
          f"10^9 stream would take {1e9 / max(res.rate, 1) / 3600:.1f} h "
          "here; memory is O(chunk), so the flat curve above extends.")
  return out


def main():
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--cases", default="example_designs:eyeriss_like,"
                  "example_designs:simba_like,gemm")
  ap.add_argument("--max-batch", type=int, default=10**6)
  ap.add_argument("--repeats", type=int, default=2)
  ap.add_argument("--stream", type=int, default=0,
                  help="also stream this many mappings per case")
  ap.add_argument("--chunk", type=int, default=65536)
  ap.add_argument("--rss", type=int, default=0,
                  help="RSS-flatness mode: stream this many mappings")
  ap.add_argument("--rss-case", default="example_designs:eyeriss_like",
                  help="case of the --rss stream (a reference case name "
                  "or 'gemm')")
  ap.add_argument("--json", default="")
  args = ap.parse_args()
  dev = jax.devices()[0]
  info = {"device": f"{dev.device_kind} ({jax.default_backend()}) x "
                    f"{jax.local_device_count()}",
          "cpus": os.cpu_count(),
          "processor": platform.processor() or platform.machine(),
          "jax": jax.__version__}
  print(" ".join(f"{k}: {v}" for k, v in info.items()))
  if args.rss:
    result = {"info": info, "rss": rss_run(args)}
  else:
    print(f"{'case':>32} {'mode':>8} {'batch':>9} {'compile s':>9} "
          f"{'eval s':>9} {'mappings/s':>11} {'peakRSS MiB':>9} "
          f"{'dev peak':>10}")
    rows = []
    for name in args.cases.split(","):
      rows += sweep(name, args)
    result = {"info": info, "rows": rows}
  if args.json:
    Path(args.json).write_text(json.dumps(result, indent=1, default=str))


if __name__ == "__main__":
  main()
