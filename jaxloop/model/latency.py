"""Cycles with bandwidth throttling (Timeloop buffer.cpp ComputePerformance).

The compute units need ``C = prod(temporal factors)`` cycles.  Each level's
per-instance demand is ``R = sum_s reads / C`` and ``W = sum_s (fills +
updates) / C`` words per cycle; a level slows down by the worst of
``read_bw / R``, ``write_bw / W`` and ``shared_bw / (R + W)`` (when below 1)
and needs ``ceil(C / slowdown)`` cycles.  The run takes the slowest level.
"""
from __future__ import annotations

import jax.numpy as jnp

from jaxloop.model.access import AccessCounts
from jaxloop.types import Array, ArchParams


def level_cycles(params: ArchParams, counts: AccessCounts,
                 compute_cycles: Array) -> Array:
  """``[L]`` cycles each storage level needs."""
  c = compute_cycles.astype(jnp.float64)
  read = jnp.sum(jnp.ceil(counts.reads), axis=1) / c
  write = jnp.sum(jnp.ceil(counts.fills + counts.updates), axis=1) / c
  # Divide only where a limit exists and demand is non-zero.
  def ratio(bw, demand):
    safe = jnp.where(demand > 0, demand, 1.0)
    return jnp.where((demand > 0) & jnp.isfinite(bw), bw / safe, jnp.inf)
  slowdown = jnp.minimum(1.0, jnp.minimum(
      ratio(params.read_bandwidth, read),
      jnp.minimum(ratio(params.write_bandwidth, write),
                  ratio(params.shared_bandwidth, read + write))))
  return jnp.ceil(c / slowdown)
