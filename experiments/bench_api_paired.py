"""Paired benchmark: the public evaluator against an earlier revision.

Runs the same measurement alternately in subprocesses of this checkout and
of a git worktree of ``--base`` (default ``f75fcfd``, the last revision
before the public API redesign, whose fastest path was
``shard.make_sharded_evaluator(structure, blocked=True, recycle=True)``),
``--rounds`` times each, and prints every run and the ratio of the medians.
Each run: one reference case, ``--batch`` random mappings in the blocked
layout on the devices, recycled output, best of ``--repeats`` calls, under
the command line's runtime (one CPU device per core, huge pages, wide
vectors).  The machine is noisy; pairing is what makes the ratio
meaningful; the rate per CPU-second (process time of the timed call) is
the steadier figure when other processes load the machine.

    python experiments/bench_api_paired.py [--batch 1000000] [--rounds 3]
                                           [--head REV]
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = Path(os.environ.get(
    "JAXLOOP_REFERENCE", ROOT.parent / "shared" / "timeloop-reference"))

COMMON = """
import json, sys, time
from pathlib import Path
import numpy as np
ref, name = Path(sys.argv[1]), sys.argv[2]
batch, repeats = int(sys.argv[3]), int(sys.argv[4])
"""

NEW = COMMON + """
from jaxloop import runtime
runtime.configure()
import jax, jaxloop
from jaxloop.mapspace import random_mappings
from jaxloop.validate import case_files
case = next(c for c in json.loads((ref / "cases.json").read_text())
            if c["name"] == name)
wl = jaxloop.load(*case_files(ref, case))
pool = random_mappings(wl.structure, batch, np.random.default_rng(0),
                       outer_weight=6.0)
ev = jaxloop.evaluator(wl, recycle=len(sys.argv) < 6 or sys.argv[5] != "fresh")
b = ev.put(pool)
call = lambda: jax.block_until_ready(ev(b))
"""

OLD = COMMON + """
from jaxloop import shard
shard.use_huge_pages()
shard.use_cpu_cores()
import jax
from jaxloop import api
from jaxloop.model import blocks
from jaxloop.mapspace import random_mappings
from jaxloop.validate import case_files
case = next(c for c in json.loads((ref / "cases.json").read_text())
            if c["name"] == name)
wl = api.load(*case_files(ref, case))
pool = random_mappings(wl.structure, batch, np.random.default_rng(0),
                       outer_weight=6.0)
ndev = jax.local_device_count()
fn = shard.make_sharded_evaluator(wl.structure, blocked=True, recycle=True)
b = jax.device_put(blocks.to_blocks(pool, blocks.default_lanes(), ndev),
                   shard.batch_sharding(shard.batch_mesh()))
state = {"out": None}
def call():
  state["out"] = jax.block_until_ready(fn(wl.params, b, state["out"]))
"""

TIMING = """
call(); call()                       # compile both variants, warm up
best = cpu = float("inf")
for _ in range(repeats):
  t0, c0 = time.perf_counter(), time.process_time()
  call()
  best = min(best, time.perf_counter() - t0)
  cpu = min(cpu, time.process_time() - c0)
print(json.dumps({"rate": batch / best, "cpu_rate": batch / cpu,
                  "devices": jax.local_device_count()}))
"""


def run(code: str, cwd: Path, argv: list, env: dict | None = None) -> dict:
  """Runs ``code`` as a script in ``cwd`` (on PYTHONPATH) with ``argv``;
  returns the JSON its last line prints."""
  path = Path(tempfile.mkstemp(suffix=".py")[1])
  path.write_text(textwrap.dedent(code))
  env = dict(os.environ if env is None else env, PYTHONPATH=str(cwd))
  out = subprocess.run([sys.executable, str(path), *map(str, argv)],
                       cwd=cwd, env=env,
                       capture_output=True, text=True, timeout=1800)
  path.unlink()
  if out.returncode:
    raise RuntimeError(out.stderr[-3000:])
  return json.loads(out.stdout.strip().splitlines()[-1])


@contextlib.contextmanager
def worktree(rev: str):
  """A detached git worktree of ``rev`` in a temporary folder (its path),
  removed afterwards."""
  with tempfile.TemporaryDirectory() as tmp:
    path = Path(tmp) / "base"
    subprocess.run(["git", "worktree", "add", "--detach", str(path), rev],
                   cwd=ROOT, check=True, capture_output=True)
    try:
      yield path
    finally:
      subprocess.run(["git", "worktree", "remove", "--force", str(path)],
                     cwd=ROOT, capture_output=True)


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("--base", default="f75fcfd")
  ap.add_argument("--head", default=None, help="a revision to measure in "
                  "place of this checkout (e.g. HEAD, leaving uncommitted "
                  "changes out)")
  ap.add_argument("--case", default="example_designs:eyeriss_like")
  ap.add_argument("--batch", type=int, default=10**6)
  ap.add_argument("--repeats", type=int, default=3)
  ap.add_argument("--rounds", type=int, default=3)
  args = ap.parse_args()
  argv = [REFERENCE, args.case, args.batch, args.repeats]
  rates = {"base": [], "head": []}
  cpu_rates = {"base": [], "head": []}
  with contextlib.ExitStack() as stack:
    base = stack.enter_context(worktree(args.base))
    head = ROOT if args.head is None else stack.enter_context(
        worktree(args.head))
    for r in range(args.rounds):
      for label, code, cwd in (("base", OLD, base), ("head", NEW, head)):
        got = run(code + TIMING, cwd, argv)
        rates[label].append(got["rate"])
        cpu_rates[label].append(got["cpu_rate"])
        print(f"round {r} {label:>4} ({got['devices']} devices): "
              f"{got['rate']:.3e} mappings/s, {got['cpu_rate']:.3e} "
              "mappings per CPU-second", flush=True)
  med = {k: statistics.median(v) for k, v in rates.items()}
  print(f"{args.case}, batch {args.batch}, recycled blocked: base "
        f"{args.base} median {med['base']:.3e}/s, head (jaxloop.evaluator) "
        f"median {med['head']:.3e}/s, head/base {med['head'] / med['base']:.3f}")
  cpu = {k: statistics.median(v) for k, v in cpu_rates.items()}
  print(f"per CPU-second (steadier when other processes load the machine): "
        f"head/base {cpu['head'] / cpu['base']:.3f}")


if __name__ == "__main__":
  main()
