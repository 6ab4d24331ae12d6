"""Soak test: 10^6 random mappings of eyeriss_like through the model.

Random perfect factorizations (prime factors dealt to temporal and spatial
slots, fan-out limits not enforced, so some mappings are invalid), random
loop orders and keep bits (the outermost level keeps everything) are
evaluated in batches; every result is checked:

* no NaN or inf in any statistic, every count and energy >= 0;
* ``computes`` equals the product of the problem bounds;
* per-level energies plus the compute energy equal the total energy;
* bypassed (level, data space) pairs have no accesses;
* ``valid`` is exactly ``capacity_ok & fanout_ok & factors_ok``.

    python experiments/soak_model.py [--mappings 1000000] [--batch 20000]
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import jax
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import jaxloop  # noqa: E402
from jaxloop.mapspace import random_mappings  # noqa: E402
from jaxloop.types import Mapping  # noqa: E402
from jaxloop.validate import case_files  # noqa: E402

REFERENCE = Path(os.environ.get(
    "JAXLOOP_REFERENCE", ROOT.parent / "shared" / "timeloop-reference"))
CASE = "example_designs:eyeriss_like"
COUNT_FIELDS = ("reads", "fills", "updates", "temporal_reductions",
                "utilized_capacity", "utilized_instances")
ALL_FIELDS = COUNT_FIELDS + ("energy", "leakage", "level_energy",
                             "level_cycles", "computes", "compute_energy",
                             "cycles", "energy_total", "utilization",
                             "compute_utilized_instances")


def check(structure, m: Mapping, s) -> dict:
  """Counts of violations of each invariant in one batch."""
  bad = {}
  for f in ALL_FIELDS:
    v = np.asarray(getattr(s, f), np.float64)
    bad[f"nonfinite {f}"] = int(np.sum(~np.isfinite(v)))
    bad[f"negative {f}"] = int(np.sum(v < 0))
  ops = math.prod(structure.dim_bounds)
  bad["computes != product of bounds"] = int(np.sum(s.computes != ops))
  total = s.level_energy.sum(-1) + s.compute_energy
  bad["energy sum != total"] = int(np.sum(
      ~np.isclose(total, s.energy_total, rtol=1e-9, atol=1e-6)))
  off = ~np.asarray(m.keep)
  bad["accesses at a bypassed level"] = int(sum(
      np.sum(np.asarray(getattr(s, f))[off] != 0)
      for f in ("reads", "fills", "updates")))
  bad["valid != its parts"] = int(np.sum(
      s.valid != (s.capacity_ok & s.fanout_ok & s.factors_ok)))
  return bad


def main(argv=None) -> int:
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--mappings", type=int, default=1_000_000)
  ap.add_argument("--batch", type=int, default=20_000)
  ap.add_argument("--seed", type=int, default=0)
  args = ap.parse_args(argv)
  cases = json.loads((REFERENCE / "cases.json").read_text())
  case = next(c for c in cases if c["name"] == CASE)
  wl = jaxloop.load(*case_files(REFERENCE, case))
  ev = jaxloop.evaluator(wl)
  rng = np.random.default_rng(args.seed)
  totals: dict = {}
  n_valid = done = 0
  energies, cycles = [], []
  t0 = time.perf_counter()
  compile_s = None
  while done < args.mappings:
    m = random_mappings(wl.structure, args.batch, rng)
    s = jax.tree.map(np.asarray, ev(m))
    if compile_s is None:
      compile_s = time.perf_counter() - t0
    for k, v in check(wl.structure, m, s).items():
      totals[k] = totals.get(k, 0) + v
    n_valid += int(s.valid.sum())
    if s.valid.any():
      energies.append(s.energy_total[s.valid].min())
      cycles.append(s.cycles[s.valid].min())
    done += args.batch
  wall = time.perf_counter() - t0
  failures = {k: v for k, v in totals.items() if v}
  print(f"soak: {CASE}, {done} random mappings in batches of {args.batch}, "
        f"{wall:.1f} s (first batch incl. compile {compile_s:.1f} s), "
        f"{done / wall:.3g} mappings/s")
  print(f"  valid mappings: {n_valid} ({100 * n_valid / done:.1f} %)")
  if energies:
    print(f"  best valid energy {min(energies) * 1e-6:.2f} uJ, "
          f"best valid cycles {min(cycles):.0f}")
  print(f"  invariants checked: {len(totals)} per mapping; violations: "
        + (", ".join(f"{k}: {v}" for k, v in failures.items())
           if failures else "none"))
  return 1 if failures else 0


if __name__ == "__main__":
  sys.exit(main())
