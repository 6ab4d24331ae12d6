"""The Pareto front of a sweep: points no other point beats on every
objective (all minimised: energy, cycles, area)."""
from __future__ import annotations

from typing import Sequence

import numpy as np

OBJECTIVES = ("energy_pj", "cycles", "area_um2")


def pareto_mask(values: np.ndarray) -> np.ndarray:
  """``bool[N]``: rows of ``values`` ``[N, K]`` (minimised) that no other
  row dominates (<= on every column and < on one).  Rows with a NaN or
  inf are never on the front; equal rows are all kept."""
  v = np.asarray(values, np.float64)
  finite = np.all(np.isfinite(v), axis=1)
  le = np.all(v[:, None, :] <= v[None, :, :], axis=2)      # [i, j]: i <= j
  lt = np.any(v[:, None, :] < v[None, :, :], axis=2)
  dominated = np.any((le & lt & finite[:, None]), axis=0)
  return finite & ~dominated


def pareto_rows(rows: Sequence[dict],
                objectives: Sequence[str] = OBJECTIVES) -> list[dict]:
  """The rows on the front (invalid rows excluded), sorted by the first
  objective."""
  ok = [r for r in rows if r.get("valid", True)]
  if not ok:
    return []
  v = np.asarray([[r[k] for k in objectives] for r in ok], np.float64)
  front = [r for r, on in zip(ok, pareto_mask(v)) if on]
  return sorted(front, key=lambda r: tuple(r[k] for k in objectives))
