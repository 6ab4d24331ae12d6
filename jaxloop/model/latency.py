"""Cycles with bandwidth throttling (Timeloop buffer.cpp ComputePerformance).

Timeloop 0fc43fb, ``src/model/buffer.cpp`` ``BufferLevel::ComputePerformance``
(lines 1686-1800), per storage level and per instance:

1. (lines 1693-1734) For each data space ``s`` (in the problem's order),
   the demand in words per cycle is ``r_s = reads_s / C`` and ``w_s =
   (fills_s + updates_s) / C``, ``C`` being the arithmetic level's cycles
   (the product of the temporal factors).  Reads are all reads of the level
   (by its children, drains to its parent, read-modify-write reads of
   partial sums); writes are fills from the parent plus updates from the
   children.  Timeloop first divides the counts by ``x*y expansion /
   utilized instances`` (1 for the perfect factorizations modelled here)
   and multiplies the demands by ``per_dataspace_bandwidth_consumption_
   scale`` (1 unless given; jaxloop does not read it).
2. (lines 1739-1767) ``R = sum_s r_s`` and ``W = sum_s w_s``
   (``std::accumulate``, left to right from 0.0).  The slowdown starts at 1
   and becomes the smallest of ``read_bw / R`` (if ``read_bw < R``),
   ``write_bw / W`` (if ``write_bw < W``) and ``shared_bw / (W + R)`` (if
   ``shared_bw < W + R``); unset bandwidths never bind.
3. (line 1787) The level needs ``ceil(C / slowdown)`` cycles.

``src/model/topology.cpp``: the run's cycles are the largest of the
arithmetic level's and every storage level's (lines 1369-1395, again in
``ComputeStats``, 1500-1508, plus network fill/drain latencies, 0 unless
given); leakage is charged over those cycles (``FinalizeBufferEnergy``,
line 1428) and utilization is ``computes / (compute instances * cycles)``
(line 1514).

Every step is done here with the same float64 operations in the same order
as the C++ code, so the rounding is Timeloop's to the cycle.  The
mathematically equal ``max(C, ceil(words / bw))`` is not: when the three
roundings push an integral quotient up or down, ``ceil`` moves by one cycle.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxloop.model.access import AccessCounts
from jaxloop.model.energy import st_ceil
from jaxloop.structure import Structure
from jaxloop.types import Array, ArchParams


def _demand(words: Array, c: Array) -> Array:
  """``[L, B]`` words per cycle over all data spaces: ``sum_s words_s / c``
  summed left to right as ``std::accumulate`` does (``words``: ``[L, S,
  B]``, ``c``: ``[L, B]``, see :func:`_divisor`)."""
  total = words[:, 0] / c
  for s in range(1, words.shape[1]):
    total = total + words[:, s] / c
  return total


def _divisor(compute_cycles: Array, levels: int) -> Array:
  """``[L, B]`` float64 compute cycles, one per level, as the divisor of
  :func:`_demand`.

  XLA's algebraic simplifier turns a division by a broadcast into a
  multiplication by the broadcast reciprocal, which rounds differently from
  C++'s ``reads / compute_cycles`` (one ulp is enough to move a ``ceil``
  by a cycle).  The optimization barrier hides the broadcast from it so
  the division stays a correctly rounded IEEE division."""
  c = compute_cycles.astype(jnp.float64)
  return jax.lax.optimization_barrier(
      jnp.broadcast_to(c[None], (levels,) + c.shape))


def _limit(bw: Array, demand: Array) -> Array:
  """``bw / demand`` where the bandwidth binds (``bw < demand``), else 1.

  ``bw``: ``[L]`` words/cycle, ``inf`` when unlimited (never binds).  The
  quotient is taken with a safe denominator so that gradients stay finite
  where the demand is 0."""
  bw = bw[:, None]
  binds = bw < demand
  return jnp.where(binds, bw / jnp.where(binds, demand, 1.0), 1.0)


def _throttled_levels(structure: Structure) -> tuple[int, ...]:
  """Levels with a finite bandwidth of any kind: the only ones whose
  slowdown can differ from 1 (static)."""
  return tuple(l for l, kinds in enumerate(structure.bandwidth_limited)
               if any(kinds))


def slowdown(structure: Structure, params: ArchParams, counts: AccessCounts,
             compute_cycles: Array, relaxed: bool = False) -> Array:
  """``[L, B]`` Timeloop's "Bandwidth throttling" of each storage level:
  the factor (<= 1) by which its bandwidth limits slow the computation.

  Demands are computed at the levels ``structure.bandwidth_limited``
  marks (the shared-bandwidth sum only if one has a shared limit); every
  other level's factor is 1, as its unlimited bandwidths give."""
  rows = _throttled_levels(structure)
  ones = jnp.ones((len(structure.bandwidth_limited),)
                  + compute_cycles.shape, jnp.float64)
  if not rows:
    return ones
  idx = np.asarray(rows)
  c = _divisor(compute_cycles, len(rows))                          # [T, B]
  reads = st_ceil(counts.reads[idx], relaxed)                      # [T, S, B]
  writes = st_ceil(counts.fills[idx] + counts.updates[idx], relaxed)
  read = _demand(reads, c)
  write = _demand(writes, c)
  limit = jnp.minimum(_limit(params.read_bandwidth[idx], read),
                      _limit(params.write_bandwidth[idx], write))
  if any(structure.bandwidth_limited[l][2] for l in rows):
    limit = jnp.minimum(limit, _limit(params.shared_bandwidth[idx],
                                      write + read))
  return ones.at[idx].set(limit)


def level_cycles(structure: Structure, params: ArchParams,
                 counts: AccessCounts, compute_cycles: Array,
                 relaxed: bool = False) -> Array:
  """``[L, B]`` cycles each storage level needs (``compute_cycles``:
  ``[B]``): ``ceil(C / slowdown)``.

  ``relaxed`` (static): straight-through ceils for real-valued factors (at
  integer factors the same numbers as the integer path).
  """
  c = compute_cycles.astype(jnp.float64)[None]
  return st_ceil(
      c / slowdown(structure, params, counts, compute_cycles, relaxed),
      relaxed)
