"""Search objectives: Timeloop's ``optimization_metrics``.

An objective is one metric or a lexicographic list of them (the first
decides, the next break ties), each minimised: ``energy`` (pJ), ``delay``
(cycles) or ``edp`` (energy-delay product, J*cycles).  Illegal mappings
rank last (``inf``).
"""
from __future__ import annotations

from typing import Sequence, Union

import numpy as np

from jaxloop.errors import SpecError
from jaxloop.types import edp

_ALIASES = {"energy": "energy", "delay": "delay", "cycles": "delay",
            "latency": "delay", "edp": "edp"}

Objective = Union[str, Sequence[str]]


def parse_objective(objective: Objective) -> tuple[str, ...]:
  """Normalises ``"edp"``, ``"delay,energy"`` or ``["delay", "energy"]``.

  Raises:
    SpecError: an unknown metric name.
  """
  if isinstance(objective, str):
    names = [n.strip() for n in objective.split(",") if n.strip()]
  else:
    names = [str(n).strip() for n in objective]
  if not names:
    names = ["edp"]
  out = []
  for n in names:
    key = _ALIASES.get(n.lower())
    if key is None:
      raise SpecError(f"unknown optimization metric '{n}'",
                      path="mapper.optimization_metrics",
                      hint="Supported: energy, delay (cycles), edp.")
    out.append(key)
  return tuple(out)


def objective_keys(stats, names: tuple[str, ...]) -> np.ndarray:
  """``[B, M]`` float64 keys (lower is better; ``inf`` for invalid).

  Args:
    stats: a numpy ``Stats`` batch.
    names: parsed metric names.
  """
  energy = np.asarray(stats.energy_total, np.float64)
  cycles = np.asarray(stats.cycles, np.float64)
  column = {"energy": energy, "delay": cycles, "edp": edp(energy, cycles)}
  keys = np.stack([column[n] for n in names], axis=-1)
  return np.where(np.asarray(stats.valid)[:, None], keys, np.inf)
