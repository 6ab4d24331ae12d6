"""The batch axis split over local devices (``jax.sharding``).

The model has no interaction between the mappings of a batch, so splitting
the leading batch axis ``B`` (or the block axis ``nb`` of the blocked
layout) over a 1-D device mesh gives the same numbers as one device, bit
for bit.  Each device runs its own rows inside ``shard_map``: left to the
automatic partitioner, the batch loop's dynamic slices make every device
run the whole batch.
"""
from __future__ import annotations

from typing import Callable, Optional, Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

AXIS = "batch"


def batch_mesh(devices: Optional[Sequence[jax.Device]] = None) -> Mesh:
  """1-D mesh named ``batch`` over ``devices`` (default: all local ones)."""
  devs = tuple(jax.local_devices() if devices is None else devices)
  return Mesh(np.asarray(devs, dtype=object), (AXIS,))


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Leading axis split over the mesh, other axes whole."""
  return NamedSharding(mesh, PartitionSpec(AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
  """Every device holds the whole array."""
  return NamedSharding(mesh, PartitionSpec())


def round_up(n: int, multiple: int) -> int:
  """Smallest multiple of ``multiple`` that is >= ``n`` (and >= multiple)."""
  multiple = max(1, int(multiple))
  return max(multiple, -(-int(n) // multiple) * multiple)


def per_device(fn: Callable, mesh: Mesh, recycle: bool = False) -> Callable:
  """``fn(params, rows[, out])`` with each device of ``mesh`` running it on
  its own share of ``rows`` (and of ``out``, an earlier result to
  overwrite); ``params`` is replicated.  Traceable (``shard_map``)."""
  specs = (PartitionSpec(), PartitionSpec(AXIS)) + (
      (PartitionSpec(AXIS),) if recycle else ())
  return jax.shard_map(fn, mesh=mesh, in_specs=specs,
                       out_specs=PartitionSpec(AXIS))


def sharded_jit(fn: Callable, mesh: Mesh, recycle: bool = False) -> Callable:
  """:func:`per_device` of ``fn``, jitted with the batch split over
  ``mesh``; with ``recycle`` the third argument (``out``) is donated."""
  rows = batch_sharding(mesh)
  shards = (replicated(mesh), rows) + ((rows,) if recycle else ())
  return jax.jit(per_device(fn, mesh, recycle), in_shardings=shards,
                 out_shardings=rows,
                 donate_argnums=(2,) if recycle else ())
