"""What each piece of the command line's runtime tuning is worth.

:func:`jaxloop.runtime.configure` (run by ``jaxloop ...`` only) applies three
settings.  This script turns each off in turn through its environment
variable and measures, in alternating subprocesses (paired: the machine is
noisy), ``--rounds`` times:

* throughput: ``--batch`` random eyeriss_like mappings through
  ``jaxloop.evaluator(wl, recycle=True)`` (``--fresh``: a fresh output per
  call) in the blocked layout (best of ``--repeats`` calls) with everything
  on, and with one of ``one CPU device`` (``JAXLOOP_CPU_DEVICES=1``) or
  ``no huge pages`` (``JAXLOOP_NO_REEXEC=1``) off;
* compilation cache: wall time of ``jaxloop map`` on the bundled example
  with ``--budget 20000``, warm cache against ``JAXLOOP_CACHE_DIR=off``.

    python experiments/bench_runtime.py [--batch 1000000] [--rounds 3]
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_api_paired  # noqa: E402
REFERENCE = Path(os.environ.get(
    "JAXLOOP_REFERENCE", ROOT.parent / "shared" / "timeloop-reference"))

VARIANTS = {
    "all on": {},
    "one CPU device": {"JAXLOOP_CPU_DEVICES": "1"},
    "no huge pages": {"JAXLOOP_NO_REEXEC": "1"},
}


def _env(extra: dict) -> dict:
  env = {k: v for k, v in os.environ.items()
         if not k.startswith(("JAXLOOP_", "GLIBC_TUNABLES"))}
  env.update(extra)
  return env


def throughput(extra: dict, argv: list) -> float:
  """Recycled blocked rate of the public evaluator (the measurement of
  ``bench_api_paired.py``) with the environment ``extra``."""
  return bench_api_paired.run(bench_api_paired.NEW + bench_api_paired.TIMING,
                              ROOT, argv, _env(extra))["rate"]


def map_wall(extra: dict, outdir: str) -> float:
  from jaxloop.api import example_files
  files = [f for f in example_files() if not f.endswith("map.yaml")]
  t0 = time.perf_counter()
  subprocess.run([sys.executable, "-m", "jaxloop", "map", *files, "-o",
                  outdir, "--budget", "20000", "--search", "random"],
                 env=_env(extra), cwd=ROOT, check=True, capture_output=True,
                 timeout=1800)
  return time.perf_counter() - t0


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("--case", default="example_designs:eyeriss_like")
  ap.add_argument("--batch", type=int, default=10**6)
  ap.add_argument("--repeats", type=int, default=3)
  ap.add_argument("--rounds", type=int, default=3)
  ap.add_argument("--fresh", action="store_true",
                  help="fresh output per call instead of recycled buffers")
  ap.add_argument("--variants", default=",".join(VARIANTS))
  ap.add_argument("--no-cache-check", action="store_true")
  args = ap.parse_args()
  argv = [REFERENCE, args.case, args.batch, args.repeats,
          "fresh" if args.fresh else "recycled"]
  variants = {k: VARIANTS[k] for k in args.variants.split(",")}
  rates = {k: [] for k in variants}
  walls = {"warm cache": [], "cache off": []}
  with tempfile.TemporaryDirectory() as tmp:
    cache = {"JAXLOOP_CACHE_DIR": str(Path(tmp) / "cache")}
    if not args.no_cache_check:
      map_wall(cache, str(Path(tmp) / "m"))          # fill the cache
    for r in range(args.rounds):
      for name, extra in variants.items():
        rates[name].append(throughput(extra, argv))
        print(f"round {r} {name:>16}: {rates[name][-1]:.3e} mappings/s",
              flush=True)
      for name, extra in (() if args.no_cache_check else (
          ("warm cache", cache), ("cache off", {"JAXLOOP_CACHE_DIR": "off"}))):
        walls[name].append(map_wall(extra, str(Path(tmp) / "m")))
        print(f"round {r} {name:>16}: jaxloop map {walls[name][-1]:.1f} s",
              flush=True)
  base = statistics.median(rates["all on"])
  print(f"\n{args.case}, batch {args.batch}, "
        f"{'fresh' if args.fresh else 'recycled'} blocked output "
        f"(medians of {args.rounds}):")
  for name, v in rates.items():
    med = statistics.median(v)
    print(f"  {name:>16}: {med:.3e}/s  all-on / this = {base / med:.2f}x")
  if args.no_cache_check:
    return
  w = {k: statistics.median(v) for k, v in walls.items()}
  print(f"  jaxloop map --budget 20000 (bundled example): warm cache "
        f"{w['warm cache']:.1f} s, cache off {w['cache off']:.1f} s")


if __name__ == "__main__":
  main()
