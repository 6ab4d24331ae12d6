"""The model over many architectures at once: ``ArchParams`` with a
leading points axis ``[P, ...]``, ``jax.vmap`` over it, split over local
devices along P.

One program per (structure, devices, shapes): a sweep pads its points to
a fixed number per call (``points_per_call``) and evaluates a fixed number
of mappings per point and call, so new points and new mappings reuse it.  :func:`compiles` counts the compilations.
"""
from __future__ import annotations

import functools
from typing import Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from jaxloop.model.evaluate import evaluate_batch
from jaxloop.structure import Structure
from jaxloop.types import ArchParams

AXIS = "points"
# Statistics a sweep ranks by and reports (the rest is never written).
ROW_STATS = ("energy_total", "cycles", "valid", "utilization",
             "level_energy", "compute_energy", "area")
_PROGRAMS: list = []


def stack_params(params: Sequence[ArchParams], size: int) -> ArchParams:
  """``[size, ...]`` numpy ``ArchParams`` of the points (the last one
  repeated as padding up to ``size``)."""
  rows = list(params) + [params[-1]] * (size - len(params))
  return jax.tree.map(lambda *xs: np.stack([np.asarray(x) for x in xs]),
                      *rows)


def _shard(fn, devices: tuple):
  """``fn(params[P], mappings[P, ...])`` jitted, P split over ``devices``
  (each device runs its own points inside ``shard_map``)."""
  if len(devices) <= 1:
    return jax.jit(fn)
  mesh = Mesh(np.asarray(devices, dtype=object), (AXIS,))
  rows = PartitionSpec(AXIS)
  body = jax.shard_map(fn, mesh=mesh, in_specs=(rows, rows), out_specs=rows)
  return jax.jit(body, in_shardings=(NamedSharding(mesh, rows),) * 2,
                 out_shardings=NamedSharding(mesh, rows))


@functools.lru_cache(maxsize=64)
def points_program(structure: Structure, devices: tuple):
  """``fn(params[P], mappings[P, N]) -> Stats[P, N]`` (the fields of
  :data:`ROW_STATS`): each point its own N mappings."""
  one = lambda p, m: evaluate_batch(structure, p, m).only(ROW_STATS)
  fn = _shard(jax.vmap(one), devices)
  _PROGRAMS.append(fn)
  return fn


def compiles() -> int:
  """Compilations of the sweep programs so far in this process."""
  return sum(fn._cache_size() for fn in _PROGRAMS)
