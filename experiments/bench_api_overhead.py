"""Paired: what the public evaluator itself costs, on the same model rule.

Runs interleaved, ``--rounds`` times: f75fcfd's fastest path
(``shard.make_sharded_evaluator(..., blocked=True, recycle=True)``, in a git
worktree) and this checkout's ``jaxloop.evaluator(wl, recycle=True)`` with
``jaxloop/model/latency.py`` temporarily replaced by its version at
``--latency-rev`` (default: before Timeloop's float-for-float throttling
rule), so both evaluate the same arithmetic.  The measurement is
``bench_api_paired.py``'s (eyeriss_like, 10^6 mappings, blocked, recycled).
The working tree's latency.py is restored afterwards.

    python experiments/bench_api_overhead.py [--rounds 3]
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_api_paired as b  # noqa: E402

ROOT = b.ROOT
LATENCY = ROOT / "jaxloop" / "model" / "latency.py"


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("--base", default="f75fcfd")
  ap.add_argument("--latency-rev", default="62c6ac6~1")
  ap.add_argument("--batch", type=int, default=10**6)
  ap.add_argument("--rounds", type=int, default=3)
  args = ap.parse_args()
  argv = [b.REFERENCE, "example_designs:eyeriss_like", args.batch, 3]
  old_rule = subprocess.run(
      ["git", "show", f"{args.latency_rev}:jaxloop/model/latency.py"],
      cwd=ROOT, check=True, capture_output=True, text=True).stdout
  current = LATENCY.read_text()
  res = {"base": [], "head": []}
  with b.worktree(args.base) as base:
    for r in range(args.rounds):
      res["base"].append(b.run(b.OLD + b.TIMING, base, argv)["rate"])
      LATENCY.write_text(old_rule)
      try:
        res["head"].append(b.run(b.NEW + b.TIMING, ROOT, argv)["rate"])
      finally:
        LATENCY.write_text(current)
      print(f"round {r}: base {res['base'][-1]:.3e}/s, head (same rule) "
            f"{res['head'][-1]:.3e}/s", flush=True)
  m = {k: statistics.median(v) for k, v in res.items()}
  print(f"medians: base {m['base']:.3e}/s, head {m['head']:.3e}/s, "
        f"head/base {m['head'] / m['base']:.3f}")


if __name__ == "__main__":
  main()
