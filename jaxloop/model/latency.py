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
from jaxloop.model.energy import st_ceil
from jaxloop.types import Array, ArchParams


def level_cycles(params: ArchParams, counts: AccessCounts,
                 compute_cycles: Array, relaxed: bool = False) -> Array:
  """``[L, B]`` cycles each storage level needs (``compute_cycles``:
  ``[B]``).

  ``relaxed`` (static): straight-through ceils for real-valued factors.

  ``ceil(C / slowdown)`` with ``slowdown = min(1, bw / (words / C))`` equals
  ``max(C, ceil(words / bw))``; the latter is one correctly rounded division,
  so batched and single evaluations agree to the cycle.
  """
  c = compute_cycles.astype(jnp.float64)[None]
  read = jnp.sum(st_ceil(counts.reads, relaxed), axis=1)
  write = jnp.sum(st_ceil(counts.fills + counts.updates, relaxed), axis=1)

  def limited(words, bw):
    # words / inf is 0 (finite gradient), so a single where is safe here.
    bw = bw[:, None]
    return jnp.where(jnp.isfinite(bw), st_ceil(words / bw, relaxed), 0.0)

  return jnp.maximum(c, jnp.maximum(
      limited(read, params.read_bandwidth),
      jnp.maximum(limited(write, params.write_bandwidth),
                  limited(read + write, params.shared_bandwidth))))
