"""Why a mapping is invalid, in Timeloop's terms.

The model reports validity as three flags (``Stats.capacity_ok``,
``fanout_ok``, ``factors_ok``); :func:`violations` names what broke them,
one line each, the way ``timeloop-model`` stops with ``couldn't map level
<name>: mapped tile size N exceeds buffer capacity C`` (``BufferLevel::
Evaluate`` in Timeloop's ``src/model/buffer.cpp``):

* a level whose kept tiles overflow its capacity (per instance, after
  multiple buffering), naming each data space's tile, or that fills less
  than its ``min_utilization``;
* spatial factors beyond a level's X or Y fan-out (Timeloop's ``mapped X
  expansion N exceeds available hardware instances M``);
* a dim whose factors do not multiply to its bound, or temporal factors at
  a storage-less spatial level.

:func:`check` raises :class:`~jaxloop.errors.InvalidMappingError` with all
of them; ``jaxloop model`` does so unless ``--allow-invalid`` is given.
"""
from __future__ import annotations

import math
from typing import Optional

import numpy as np

from jaxloop.errors import InvalidMappingError
from jaxloop.structure import Structure
from jaxloop.types import ArchParams, Mapping, Stats

HINT = ("Reduce the factors at the levels named (or bypass data spaces "
        "there); pass --allow-invalid to `jaxloop model` to write the "
        "statistics anyway.")


def violations(structure, params: Optional[ArchParams] = None,
               mapping: Optional[Mapping] = None,
               stats: Optional[Stats] = None) -> list[str]:
  """What makes one mapping invalid; empty when it is valid.

  Args:
    structure: the :class:`~jaxloop.structure.Structure`, or a
      :class:`jaxloop.Workload` (its parameters, the mapping in its files
      and its evaluation are the defaults of the other arguments).
    params: the architecture numbers (capacities, minimum utilizations).
    mapping: one mapping (``[L, D]``/``[L, S]`` fields, no batch axis).
    stats: its statistics (evaluated when not given).

  Returns:
    One line per violation, innermost level first, e.g. ``level
    'GlobalBuffer': mapped tile size 2304 words (Weights 2048, Inputs 256)
    exceeds buffer capacity 2048 words``.
  """
  structure, params, mapping, stats = _arguments(structure, params, mapping,
                                                 stats)
  m = {k: np.asarray(v) for k, v in vars(mapping).items()}
  if m["temporal"].ndim != 2:
    raise ValueError("violations() explains one mapping: pass one without "
                     "a batch axis (e.g. jax.tree.map(lambda x: x[i], m))")
  out = _factor_violations(structure, m)
  for lvl in range(structure.num_levels):
    out += _fanout_violations(structure, m, lvl)
    out += _capacity_violations(structure, params, stats, lvl)
  return out + _unexplained(stats, out)


def check(structure, params: Optional[ArchParams] = None,
          mapping: Optional[Mapping] = None, stats: Optional[Stats] = None,
          where: str = "") -> None:
  """Raises :class:`~jaxloop.errors.InvalidMappingError` naming every
  violation when the mapping is invalid (arguments as :func:`violations`;
  ``where``: the mapping's file, for the message)."""
  found = violations(structure, params, mapping, stats)
  if found:
    raise InvalidMappingError(found, where=where, hint=HINT)


def _arguments(structure, params, mapping, stats):
  """Fills in the defaults (from a Workload, or by evaluating)."""
  if not isinstance(structure, Structure):
    wl = structure
    structure = wl.structure
    params = wl.params if params is None else params
    mapping = wl.mapping() if mapping is None else mapping
    if stats is None:
      stats = wl.evaluate(mapping)
  if params is None or mapping is None:
    raise TypeError("violations() needs params and a mapping with a "
                    "Structure (or pass a Workload)")
  if stats is None:
    import jax
    from jaxloop import model
    from jaxloop.precision import exact
    stats = jax.tree.map(np.asarray, exact(model.evaluate)(
        structure, params, mapping))
  return structure, params, mapping, stats


def _fmt(x) -> str:
  """An integer-valued count without ``.0``; other numbers as ``%g``."""
  x = float(x)
  if math.isinf(x):
    return "unbounded"
  return str(int(x)) if x.is_integer() else f"{x:g}"


def _factors(structure: Structure, row: np.ndarray) -> str:
  """``K8 C2`` for the dims of a factor row above 1."""
  return " ".join(f"{structure.dim_names[d]}{_fmt(v)}"
                  for d, v in enumerate(row) if v != 1)


def _factor_violations(structure: Structure, m: dict) -> list[str]:
  """Dims whose factors over all levels do not multiply to the bound, and
  temporal loops at storage-less levels."""
  out = []
  full = (m["temporal"].astype(np.float64) * m["spatial_x"]
          * m["spatial_y"])
  for d, (name, bound) in enumerate(zip(structure.dim_names,
                                        structure.dim_bounds)):
    total = float(np.prod(full[:, d]))
    if math.isclose(total, bound, rel_tol=1e-9):
      continue
    parts = [f"{structure.level_names[l]} {_fmt(full[l, d])}"
             for l in reversed(range(structure.num_levels))
             if full[l, d] != 1]
    given = " x ".join(parts) if parts else "all factors 1"
    out.append(f"dimension '{name}': factors multiply to {_fmt(total)} "
               f"({given}), not its bound {bound}")
  for l, dummy in enumerate(structure.is_dummy):
    if dummy and np.any(m["temporal"][l] != 1):
      out.append(f"level '{structure.level_names[l]}' has no storage but "
                 f"temporal factors {_factors(structure, m['temporal'][l])} "
                 "(only spatial factors belong there)")
  return out


def _fanout_violations(structure: Structure, m: dict, lvl: int) -> list[str]:
  """Spatial factors beyond level ``lvl``'s X or Y fan-out."""
  name = structure.level_names[lvl]
  fx, fy = structure.fanout_x[lvl], structure.fanout_y[lvl]
  sx, sy = m["spatial_x"][lvl], m["spatial_y"][lvl]
  px, py = float(np.prod(sx)), float(np.prod(sy))
  if fx * fy == 1 and px * py > 1:
    return [f"level '{name}' has no fan-out (one child instance), but its "
            f"spatial factors {_factors(structure, sx * sy)} use "
            f"{_fmt(px * py)} instances"]
  out = []
  for axis, used, limit, row in (("X", px, fx, sx), ("Y", py, fy, sy)):
    if used > limit * (1 + 1e-9):
      out.append(f"level '{name}': mapped {axis} expansion {_fmt(used)} "
                 f"({_factors(structure, row)}) exceeds its {axis} fan-out "
                 f"{limit} ({fx} x {fy} children)")
  return out


def _capacity_violations(structure: Structure, params: ArchParams,
                         stats: Stats, lvl: int) -> list[str]:
  """Kept tiles that overflow level ``lvl`` or fill less than its minimum
  utilization (Timeloop compares their sum with the capacity)."""
  tiles = np.asarray(stats.utilized_capacity)[lvl].astype(np.float64)
  used = float(tiles.sum())
  capacity = float(np.asarray(params.capacity)[lvl])
  name = structure.level_names[lvl]
  per_ds = ", ".join(f"{ds} {_fmt(t)}" for ds, t in
                     zip(structure.dataspace_names, tiles) if t > 0)
  tile = f"mapped tile size {_fmt(used)} words" + (
      f" ({per_ds})" if per_ds else "")
  if used > capacity:
    return [f"level '{name}': {tile} exceeds buffer capacity "
            f"{_fmt(capacity)} words per instance"]
  floor = capacity * float(np.asarray(params.min_utilization)[lvl])
  if math.isfinite(capacity) and used < floor:
    return [f"level '{name}': {tile} is less than its constrained minimum "
            f"utilization {_fmt(floor)} words (min_utilization "
            f"{_fmt(np.asarray(params.min_utilization)[lvl])} of "
            f"{_fmt(capacity)})"]
  return []


def _unexplained(stats: Stats, found: list[str]) -> list[str]:
  """A line for a validity flag that is down with nothing named above
  (a safety net: the checks mirror the model's)."""
  if found:
    return []
  down = [f for f in ("capacity_ok", "fanout_ok", "factors_ok")
          if getattr(stats, f, None) is not None
          and not bool(np.all(np.asarray(getattr(stats, f))))]
  return [f"the model reports {f} = False" for f in down]
