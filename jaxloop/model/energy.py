"""Energy from access counts (Timeloop buffer.cpp / arithmetic.cpp).

Per level and data space, accesses are grouped into vectors of the level's
block size (``ceil(count / block)`` per action), and one cluster's energy is
``vr * E_read + vf * E_fill + vu * E_update``.  The total is that times the
utilized clusters, ``min(utilized_instances, instances / cluster_size)``.
Leakage is ``E_leak * cycles * max(1, utilized instances)`` per level.
Temporal-reduction and address-generation energies are zero unless the
architecture gives an adder energy, which the dense model does not use.

Relaxed mode (``relaxed=True``, real factors): ``ceil`` is a
straight-through ceil (the value is the ceil, the gradient that of the
quotient), so the vector rounding does not zero the gradient.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxloop.model.access import AccessCounts
from jaxloop.structure import Structure
from jaxloop.types import Array, ArchParams


def st_ceil(x: Array, relaxed: bool = False) -> Array:
  """``ceil(x)``; with ``relaxed``, straight-through (gradient of ``x``)."""
  c = jnp.ceil(x)
  if not relaxed:
    return c
  return x + jax.lax.stop_gradient(c - x)


def _ceil_div(x: Array, block: Array, relaxed: bool = False) -> Array:
  return st_ceil(x / block, relaxed)


def access_energy(structure: Structure, params: ArchParams,
                  counts: AccessCounts, relaxed: bool = False) -> Array:
  """``[L, S, B]`` pJ of reads, fills and updates over all instances.

  ``relaxed`` (static) selects straight-through rounding for real factors.
  """
  block = np.asarray(structure.block_size, np.float64)[:, None, None]
  cluster = np.asarray(structure.cluster_size, np.float64)
  instances = np.asarray(structure.instances, np.float64)
  per_cluster = (
      _ceil_div(counts.reads, block, relaxed)
      * params.read_energy[:, None, None]
      + _ceil_div(counts.fills, block, relaxed)
      * params.fill_energy[:, None, None]
      + _ceil_div(counts.updates, block, relaxed)
      * params.update_energy[:, None, None])
  used = counts.utilized_instances.astype(jnp.float64)             # [L, B]
  clusters = jnp.minimum(used, (instances / cluster)[:, None])
  kept = counts.utilized_capacity > 0
  return jnp.where(kept, per_cluster * clusters[:, None], 0.0)


def leakage_energy(params: ArchParams, counts: AccessCounts,
                   cycles: Array) -> Array:
  """``[L, B]`` pJ leaked over the run by the utilized instances
  (``cycles``: ``[B]``)."""
  kept = jnp.any(counts.utilized_capacity > 0, axis=1)
  leaking = jnp.maximum(1.0, jnp.where(kept, counts.utilized_instances, 0))
  return params.leak_energy[:, None] * cycles[None] * leaking
