"""What each piece of the command line's runtime tuning is worth.

:func:`jaxloop.runtime.configure` (run by ``jaxloop ...`` only) applies four
settings.  This script turns each off in turn through its environment
variable and measures, in alternating subprocesses (paired: the machine is
noisy), ``--rounds`` times:

* throughput: ``--batch`` random eyeriss_like mappings through
  ``jaxloop.evaluator(wl, recycle=True)`` in the blocked layout (best of
  ``--repeats`` calls) with everything on, and with one of ``one CPU
  device`` (``JAXLOOP_CPU_DEVICES=1``), ``256-bit vectors``
  (``JAXLOOP_VECTOR_WIDTH=256``), ``no huge pages``
  (``JAXLOOP_NO_REEXEC=1``) off;
* compilation cache: wall time of ``jaxloop map`` on the bundled example
  with ``--budget 20000``, warm cache against ``JAXLOOP_CACHE_DIR=off``.

    python experiments/bench_runtime.py [--batch 1000000] [--rounds 3]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = Path(os.environ.get(
    "JAXLOOP_REFERENCE", ROOT.parent / "shared" / "timeloop-reference"))

THROUGHPUT = """
import json, sys, time
from pathlib import Path
from jaxloop import runtime
runtime.configure()
import jax, numpy as np, jaxloop
from jaxloop.mapspace import random_mappings
from jaxloop.validate import case_files
ref, name = Path(sys.argv[1]), sys.argv[2]
batch, repeats = int(sys.argv[3]), int(sys.argv[4])
case = next(c for c in json.loads((ref / "cases.json").read_text())
            if c["name"] == name)
wl = jaxloop.load(*case_files(ref, case))
pool = random_mappings(wl.structure, batch, np.random.default_rng(0),
                       outer_weight=6.0)
ev = jaxloop.evaluator(wl, recycle=True)
b = ev.put(pool)
jax.block_until_ready(ev(b)); jax.block_until_ready(ev(b))
best = float("inf")
for _ in range(repeats):
  t0 = time.perf_counter(); jax.block_until_ready(ev(b))
  best = min(best, time.perf_counter() - t0)
print(json.dumps({"rate": batch / best}))
"""

VARIANTS = {
    "all on": {},
    "one CPU device": {"JAXLOOP_CPU_DEVICES": "1"},
    "256-bit vectors": {"JAXLOOP_VECTOR_WIDTH": "256"},
    "no huge pages": {"JAXLOOP_NO_REEXEC": "1"},
}


def _env(extra: dict) -> dict:
  env = {k: v for k, v in os.environ.items()
         if not k.startswith(("JAXLOOP_", "GLIBC_TUNABLES"))}
  env.update(PYTHONPATH=str(ROOT), **extra)
  return env


def throughput(extra: dict, argv: list) -> float:
  with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
    f.write(THROUGHPUT)
  try:
    out = subprocess.run([sys.executable, f.name, *map(str, argv)],
                         env=_env(extra), cwd=ROOT, capture_output=True,
                         text=True, timeout=1800)
  finally:
    os.unlink(f.name)
  if out.returncode:
    raise RuntimeError(out.stderr[-3000:])
  return json.loads(out.stdout.strip().splitlines()[-1])["rate"]


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
  args = ap.parse_args()
  argv = [REFERENCE, args.case, args.batch, args.repeats]
  rates = {k: [] for k in VARIANTS}
  walls = {"warm cache": [], "cache off": []}
  with tempfile.TemporaryDirectory() as tmp:
    cache = {"JAXLOOP_CACHE_DIR": str(Path(tmp) / "cache")}
    map_wall(cache, str(Path(tmp) / "m"))          # fill the cache
    for r in range(args.rounds):
      for name, extra in VARIANTS.items():
        rates[name].append(throughput(extra, argv))
        print(f"round {r} {name:>16}: {rates[name][-1]:.3e} mappings/s",
              flush=True)
      for name, extra in (("warm cache", cache),
                          ("cache off", {"JAXLOOP_CACHE_DIR": "off"})):
        walls[name].append(map_wall(extra, str(Path(tmp) / "m")))
        print(f"round {r} {name:>16}: jaxloop map {walls[name][-1]:.1f} s",
              flush=True)
  base = statistics.median(rates["all on"])
  print(f"\n{args.case}, batch {args.batch}, recycled blocked "
        f"(medians of {args.rounds}):")
  for name, v in rates.items():
    med = statistics.median(v)
    print(f"  {name:>16}: {med:.3e}/s  all-on / this = {base / med:.2f}x")
  w = {k: statistics.median(v) for k, v in walls.items()}
  print(f"  jaxloop map --budget 20000 (bundled example): warm cache "
        f"{w['warm cache']:.1f} s, cache off {w['cache off']:.1f} s")


if __name__ == "__main__":
  main()
