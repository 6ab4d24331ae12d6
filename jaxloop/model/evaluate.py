"""One mapping in, Timeloop's statistics out; batched with vmap + jit.

``evaluate`` is written for a single mapping (the equinox rule) and is pure;
``make_evaluator`` lifts it over a leading batch axis and compiles it once
per ``Structure``.  Integer counts stay exact in 64-bit (jaxloop enables
``jax_enable_x64`` on import).
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from jaxloop.model import access, energy, latency, tiling, unit_dims
from jaxloop.structure import Structure
from jaxloop.types import ArchParams, Mapping, Stats


def evaluate(structure: Structure, params: ArchParams,
             mapping: Mapping) -> Stats:
  """Timeloop's per-level statistics of one mapping.

  Args:
    structure: static arch/problem structure (hashable).
    params: architecture numbers (ERT energies, capacities, bandwidths).
    mapping: one mapping (no batch axis); fields ``[L, D]``/``[L, S]``.

  Returns:
    ``Stats`` with ``[L, S]`` per-instance counts, energies, cycles, and
    validity flags (invalid mappings are reported, not raised).

  Relaxed use (issue #4): float factors and float keep weights in [0, 1]
  select the relaxed model (same function; straight-through rounding,
  interpolated bypass, see :mod:`jaxloop.model.access`).  At integer-valued
  factors with 0/1 keep weights it gives the integer path's numbers.  The
  validity flags compare factor products with a 1e-9 relative tolerance
  there (same verdicts at integer points).
  """
  relaxed = access.is_relaxed(mapping)
  # Counts come from the structure without bound-1 dims (same numbers for
  # every legal mapping, far less work); validity from the full mapping.
  small, kept = unit_dims.reduced(structure)
  m = unit_dims.restrict(mapping, kept)
  counts = access.access_counts(small, m)
  spatial = tiling.spatial_factors(m)
  compute_cycles = jnp.prod(m.temporal)
  compute_units = jnp.prod(spatial)
  computes = compute_cycles * compute_units

  cycles_per_level = latency.level_cycles(params, counts, compute_cycles,
                                          relaxed)
  cycles = jnp.maximum(compute_cycles.astype(jnp.float64),
                       jnp.max(cycles_per_level))
  dyn = energy.access_energy(structure, params, counts, relaxed)
  leak = energy.leakage_energy(params, counts, cycles)
  level_energy = jnp.sum(dyn, axis=1) + leak
  compute_energy = computes * params.compute_energy
  total = jnp.sum(level_energy) + compute_energy
  utilization = (computes / structure.compute_instances) / cycles
  area = (jnp.sum(params.area * np.asarray(structure.instances))
          + params.compute_area * structure.compute_instances)

  bounds = jnp.asarray(structure.dim_bounds, mapping.temporal.dtype)
  dummy = np.asarray(structure.is_dummy)
  tol = 1e-9 if relaxed else 0   # relative slack for real factors
  eq = lambda a, b: jnp.abs(a - b) <= tol * jnp.abs(b)
  full_spatial = tiling.spatial_factors(mapping)
  factors_ok = (jnp.all(eq(jnp.prod(mapping.temporal * full_spatial, axis=0),
                           bounds))
                # storage-less levels hold no temporal loops
                & jnp.all(eq(jnp.where(dummy[:, None], mapping.temporal, 1),
                             1)))
  fan_x = np.asarray(structure.fanout_x) * (1 + tol)
  fan_y = np.asarray(structure.fanout_y) * (1 + tol)
  fanout_ok = (jnp.all(jnp.prod(mapping.spatial_x, axis=1) <= fan_x)
               & jnp.all(jnp.prod(mapping.spatial_y, axis=1) <= fan_y))
  used = jnp.sum(counts.utilized_capacity, axis=1).astype(jnp.float64)
  finite = jnp.isfinite(params.capacity)
  floor = jnp.where(finite, params.capacity, 0.0) * params.min_utilization
  capacity_ok = jnp.all((used <= params.capacity)
                        & ((used >= floor) | ~finite))
  return Stats(
      reads=counts.reads, fills=counts.fills, updates=counts.updates,
      temporal_reductions=counts.temporal_reductions,
      utilized_capacity=counts.utilized_capacity,
      utilized_instances=jnp.where(counts.utilized_capacity > 0,
                                   counts.utilized_instances[:, None], 0),
      link_transfers=counts.link_transfers, energy=dyn, leakage=leak, level_energy=level_energy,
      level_cycles=cycles_per_level, computes=computes,
      compute_utilized_instances=compute_units,
      compute_energy=compute_energy, cycles=cycles, energy_total=total,
      utilization=utilization, area=area, capacity_ok=capacity_ok,
      fanout_ok=fanout_ok, factors_ok=factors_ok,
      valid=capacity_ok & fanout_ok & factors_ok)


# Mappings per vmapped block inside a batch.  The model's intermediates of
# a block of ~1000 mappings stay in the CPU caches; one vmap over 10**5
# mappings streams them through memory and runs ~1.7x slower
# (experiments/bench_model.py, 2-core CPU).
CHUNK = 1024


def evaluate_batch(structure: Structure, params: ArchParams,
                   mappings: Mapping, chunk: int = CHUNK) -> Stats:
  """:func:`evaluate` over a leading batch axis ``[B, ...]`` (traceable).

  Rows are independent; the batch runs as a loop over vmapped blocks of
  ``chunk`` rows (``lax.map`` with ``batch_size``; the remainder is one
  more vmap), which gives the same numbers as one vmap.
  """
  one = functools.partial(evaluate, structure, params)
  batch = jax.tree.leaves(mappings)[0].shape[0]
  if batch <= chunk:
    return jax.vmap(one)(mappings)
  return jax.lax.map(one, mappings, batch_size=chunk)


@functools.lru_cache(maxsize=64)
def make_evaluator(structure: Structure):
  """``fn(params, mappings) -> Stats`` over a leading batch axis, jitted.

  ``params`` is shared by the batch.  One compilation per (structure,
  batch size); a new batch of the same size with other loop orders or
  bypass choices reuses it.
  """
  return jax.jit(functools.partial(evaluate_batch, structure))


@functools.lru_cache(maxsize=64)
def make_single_evaluator(structure: Structure):
  """``fn(params, mapping) -> Stats`` for one mapping, jitted."""
  return jax.jit(functools.partial(evaluate, structure))
