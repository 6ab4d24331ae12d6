"""Multi-host streaming: every process evaluates its share of one stream.

Each process joins the run with ``jax.distributed.initialize`` and
evaluates, on all of its local devices, the chunks ``c`` with
``c % num_processes == process_id`` of one on-device mapspace stream
(``jaxloop.streaming.stream(wl, count=N, part=(rank, size))``: chunk ``c`` is
drawn from ``fold_in(PRNGKey(seed), c)``, so the shares are disjoint and
their union is exactly the single-process stream).  The per-process top-k,
bests, counts and histograms are allgathered
(``multihost_utils.process_allgather``) and merged by (objective, stream
position).  Process 0 prints the combined result; ``--check`` also runs the
whole stream in process 0 alone and compares.

Launch two processes on one machine (each command in its own shell, or the
first one with ``&``):

    python experiments/multihost_example.py --coordinator 127.0.0.1:12355 \\
        --num-processes 2 --process-id 0 &
    python experiments/multihost_example.py --coordinator 127.0.0.1:12355 \\
        --num-processes 2 --process-id 1

or let the script spawn them: ``python experiments/multihost_example.py
--spawn 2 --check``.  On a cluster run one process per host with the
coordinator's ``host:port`` and the host's rank (under SLURM or Open MPI
``jax.distributed.initialize()`` without arguments finds them itself).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
REFERENCE = Path(os.environ.get(
    "JAXLOOP_REFERENCE", ROOT.parent / "shared" / "timeloop-reference"))


def _pack(res, k: int) -> dict:
  """Fixed-shape numpy arrays of a StreamResult (for the allgather)."""
  import numpy as np
  from jaxloop.streaming import METRICS
  n = len(res.topk_objective)
  pad = lambda a, fill: np.concatenate(  # noqa: E731
      [a, np.full((k - n,) + a.shape[1:], fill, a.dtype)])
  out = {"topk_objective": pad(res.topk_objective, np.inf),
         "topk_index": pad(res.topk_index, -1),
         "evaluated": np.int64(res.evaluated), "valid": np.int64(res.valid),
         "histogram": res.histogram, "chunks": np.int64(res.chunks),
         "best_value": np.asarray([res.best[m][0] for m in METRICS]),
         "best_index": np.asarray([res.best[m][1] for m in METRICS])}
  for f in ("temporal", "spatial_x", "spatial_y", "order", "keep"):
    out["topk_" + f] = pad(getattr(res.topk_mapping, f), 1 if f not in (
        "order", "keep") else 0)
  return out


def _unpack(g: dict, p: int, edges, objective: str):
  """StreamResult of process ``p`` from the gathered arrays."""
  import numpy as np
  from jaxloop.streaming import METRICS, StreamResult
  from jaxloop.types import Mapping
  ok = np.isfinite(g["topk_objective"][p])
  maps = Mapping(**{f: g["topk_" + f][p][ok] for f in (
      "temporal", "spatial_x", "spatial_y", "order", "keep")})
  # Best mappings per metric are not gathered (only value and position).
  best = {m: ((float(g["best_value"][p][i]), int(g["best_index"][p][i]), 0)
              if g["best_index"][p][i] >= 0 else (float("inf"), -1, None))
          for i, m in enumerate(METRICS)}
  return StreamResult(
      objective=objective, topk_objective=g["topk_objective"][p][ok],
      topk_index=g["topk_index"][p][ok], topk_mapping=maps, best=best,
      evaluated=int(g["evaluated"][p]), valid=int(g["valid"][p]),
      histogram=g["histogram"][p], bin_edges=edges,
      chunks=int(g["chunks"][p]))


def run(args) -> int:
  import jax
  jax.distributed.initialize(coordinator_address=args.coordinator,
                             num_processes=args.num_processes,
                             process_id=args.process_id)
  import numpy as np
  from jax.experimental import multihost_utils
  import jaxloop
  from jaxloop.streaming import merge_results, stream
  from jaxloop.validate import case_files

  pid, nproc = jax.process_index(), jax.process_count()
  cases = json.loads((REFERENCE / "cases.json").read_text())
  case = next(c for c in cases if c["name"] == args.case)
  wl = jaxloop.load(*case_files(REFERENCE, case))
  run_stream = lambda **kw: stream(  # noqa: E731
      wl, count=args.count, seed=args.seed, chunk=args.chunk,
      topk=args.topk, objective=args.objective, **kw)
  t0 = time.perf_counter()
  mine = run_stream(part=(pid, nproc))
  print(f"[process {pid}/{nproc}] {len(jax.local_devices())} local "
        f"device(s), {mine.chunks} chunks, {mine.evaluated} mappings, "
        f"{mine.valid} valid, {time.perf_counter() - t0:.1f} s", flush=True)
  gathered = multihost_utils.process_allgather(_pack(mine, args.topk))
  gathered = jax.tree.map(np.asarray, gathered)
  parts = [_unpack(gathered, p, mine.bin_edges, mine.objective)
           for p in range(nproc)]
  total = merge_results(parts, args.topk)
  rc = 0
  if pid == 0:
    print(f"combined: {total.evaluated} mappings ({total.valid} valid) over "
          f"{nproc} processes; best {total.objective} "
          f"{total.topk_objective[0]:.6g} at stream position "
          f"{total.topk_index[0]}; top-{len(total.topk_index)} positions "
          f"{total.topk_index.tolist()}")
    if args.check:
      alone = run_stream()
      same = (np.array_equal(alone.topk_index, total.topk_index)
              and np.array_equal(alone.topk_objective, total.topk_objective)
              and np.array_equal(alone.histogram, total.histogram)
              and alone.valid == total.valid
              and np.array_equal(alone.topk_mapping.temporal,
                                 total.topk_mapping.temporal))
      print(f"check against one process: {'identical' if same else 'DIFFERENT'}")
      rc = 0 if same else 1
  multihost_utils.sync_global_devices("done")
  return rc


def spawn(args) -> int:
  """Starts ``args.spawn`` local processes on 127.0.0.1 and waits."""
  import socket
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
  base = [sys.executable, __file__, "--coordinator", f"127.0.0.1:{port}",
          "--num-processes", str(args.spawn)]
  for k in ("case", "count", "chunk", "topk", "objective", "seed"):
    base += [f"--{k}", str(getattr(args, k))]
  procs = [subprocess.Popen(base + ["--process-id", str(i)]
                            + (["--check"] if args.check else []))
           for i in range(args.spawn)]
  codes = [p.wait(timeout=args.timeout) for p in procs]
  return max(abs(c) for c in codes)


def main():
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--coordinator", default="127.0.0.1:12355")
  ap.add_argument("--num-processes", type=int, default=1)
  ap.add_argument("--process-id", type=int, default=0)
  ap.add_argument("--spawn", type=int, default=0,
                  help="start this many local processes instead")
  ap.add_argument("--case", default="example_designs:eyeriss_like")
  ap.add_argument("--count", type=int, default=200_000)
  ap.add_argument("--chunk", type=int, default=16384)
  ap.add_argument("--topk", type=int, default=16)
  ap.add_argument("--objective", default="edp")
  ap.add_argument("--seed", type=int, default=0)
  ap.add_argument("--check", action="store_true")
  ap.add_argument("--timeout", type=float, default=1800)
  args = ap.parse_args()
  sys.exit(spawn(args) if args.spawn else run(args))


if __name__ == "__main__":
  main()
