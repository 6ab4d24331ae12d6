"""Mappings in, Timeloop's statistics out; batched and jitted.

``evaluate_last`` takes a block of mappings with the batch as the last axis
(the layout the CPU vectorizes, see :mod:`jaxloop.model.tiling`) and is
pure; ``evaluate`` is that for one mapping and ``evaluate_batch`` for a
leading batch axis (compiled and sharded by :func:`jaxloop.evaluator`).
Counts are exact int64/float64: the functions raise
:class:`jaxloop.precision.PrecisionError` when traced without 64-bit types.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxloop.model import access, energy, latency, tiling, unit_dims
from jaxloop.precision import require_x64
from jaxloop.structure import Structure, check_bandwidths
from jaxloop.types import ArchParams, Mapping, Stats


def evaluate_last(structure: Structure, params: ArchParams,
                  mapping: Mapping, bounds=None) -> Stats:
  """Timeloop's per-level statistics of a batch-last block of mappings.

  Args:
    structure: static arch/problem structure (hashable).
    params: architecture numbers (ERT energies, capacities, bandwidths),
      shared by the block.
    mapping: mappings with the batch as the *last* axis: ``[L, D, B]`` /
      ``[L, S, B]`` fields (see :mod:`jaxloop.model.tiling`).
    bounds: ``[D]`` the problem's dim bounds as data, when ``structure``
      is a layer kind shared by several problems (its ``dim_bounds`` are
      then upper bounds, see :mod:`jaxloop.network.kinds`); default the
      structure's own bounds.

  Returns:
    ``Stats`` with ``[L, S, B]`` per-instance counts, energies, cycles, and
    validity flags (invalid mappings are reported, not raised).

  Relaxed use: float factors and float keep weights in [0, 1] select the
  relaxed model (same function; straight-through rounding, interpolated
  bypass, see :mod:`jaxloop.model.access`).  At integer-valued factors
  with 0/1 keep weights it gives the integer path's numbers.  The validity
  flags compare factor products with a 1e-9 relative tolerance there (same
  verdicts at integer points).
  """
  check_bandwidths(structure, params)
  relaxed = access.is_relaxed(mapping)
  batch = mapping.temporal.shape[-1]
  # Counts come from the structure without bound-1 dims (same numbers for
  # every legal mapping, far less work); validity from the full mapping.
  small, kept = unit_dims.reduced(structure)
  m = unit_dims.restrict(mapping, kept)
  counts = access.access_counts_last(small, m)
  spatial = tiling.spatial_factors(m)
  compute_cycles = jnp.prod(m.temporal, axis=(0, 1))               # [B]
  compute_units = jnp.prod(spatial, axis=(0, 1))
  computes = compute_cycles * compute_units
  cycles_per_level, cycles = _cycles(structure, params, counts,
                                     compute_cycles, relaxed)
  dyn, leak, level_energy, compute_energy, total = _energy(
      structure, params, counts, cycles, computes, relaxed)
  utilization = (computes / structure.compute_instances) / cycles
  area = _area(structure, params)
  tol = 1e-9 if relaxed else 0   # relative slack for real factors
  factors_ok = _factors_ok(structure, mapping, tol, bounds)
  fanout_ok = _fanout_ok(structure, mapping, tol)
  capacity_ok = _capacity_ok(params, counts)
  return Stats(
      reads=counts.reads, fills=counts.fills, updates=counts.updates,
      temporal_reductions=counts.temporal_reductions,
      utilized_capacity=counts.utilized_capacity,
      utilized_instances=jnp.where(
          counts.utilized_capacity > 0,
          counts.utilized_instances[:, None].astype(spatial.dtype), 0),
      link_transfers=counts.link_transfers, energy=dyn, leakage=leak,
      level_energy=level_energy, level_cycles=cycles_per_level,
      computes=computes, compute_utilized_instances=compute_units,
      compute_energy=compute_energy, cycles=cycles, energy_total=total,
      utilization=utilization, area=jnp.broadcast_to(area, (batch,)),
      capacity_ok=capacity_ok, fanout_ok=fanout_ok, factors_ok=factors_ok,
      valid=capacity_ok & fanout_ok & factors_ok)


def _cycles(structure: Structure, params: ArchParams,
            counts: access.AccessCounts,
            compute_cycles: jax.Array,
            relaxed: bool) -> tuple[jax.Array, jax.Array]:
  """``(level cycles [L, B], cycles [B])``: each level's bandwidth-bound
  cycles, and the run's, the slowest of the levels and the computes
  (``compute_cycles [B]``, one compute per cycle per unit)."""
  cycles_per_level = latency.level_cycles(structure, params, counts,
                                          compute_cycles, relaxed)  # [L, B]
  cycles = jnp.maximum(compute_cycles.astype(jnp.float64),
                       jnp.max(cycles_per_level, axis=0))
  return cycles_per_level, cycles


def _energy(structure: Structure, params: ArchParams,
            counts: access.AccessCounts, cycles: jax.Array,
            computes: jax.Array, relaxed: bool) -> tuple[jax.Array, ...]:
  """``(access energy [L, S, B], leakage [L, B], level energy [L, B],
  compute energy [B], total [B])``: ERT energies per access and compute,
  leakage over ``cycles [B]``; ``computes [B]`` MACs."""
  dyn = energy.access_energy(structure, params, counts, relaxed)
  leak = energy.leakage_energy(params, counts, cycles)
  level_energy = jnp.sum(dyn, axis=1) + leak                       # [L, B]
  compute_energy = computes * params.compute_energy
  total = jnp.sum(level_energy, axis=0) + compute_energy
  return dyn, leak, level_energy, compute_energy, total


def _area(structure: Structure, params: ArchParams) -> jax.Array:
  """Scalar area: every instance of every level plus the compute units."""
  return (jnp.sum(params.area * np.asarray(structure.instances))
          + params.compute_area * structure.compute_instances)


def _wide(x: jax.Array) -> jax.Array:
  """int64 for integer factors (an illegal mapping's int32 products may
  overflow); real factors as they are."""
  return x.astype(jnp.int64) if jnp.issubdtype(x.dtype, jnp.integer) else x


def _factors_ok(structure: Structure, mapping: Mapping,
                tol: float, bounds=None) -> jax.Array:
  """``bool[B]``: the factors of every dim multiply to its bound, and
  storage-less levels hold no temporal loops (factor 1).

  ``tol``: relative slack of the comparisons (0 for integer factors).
  ``mapping``: the full mapping, ``[L, D, B]`` fields; ``bounds``: ``[D]``
  data (default the structure's static bounds).
  """
  if bounds is None:
    bounds = np.asarray(structure.dim_bounds)
  bounds = bounds[:, None]
  dummy = np.asarray(structure.is_dummy)[:, None, None]
  eq = lambda a, b: jnp.abs(a - b) <= tol * jnp.abs(b)
  full_spatial = _wide(mapping.spatial_x) * _wide(mapping.spatial_y)
  return (jnp.all(eq(jnp.prod(_wide(mapping.temporal) * full_spatial,
                              axis=0), bounds), axis=0)
          & jnp.all(eq(jnp.where(dummy, mapping.temporal, 1), 1),
                    axis=(0, 1)))


def _fanout_ok(structure: Structure, mapping: Mapping, tol: float) -> jax.Array:
  """``bool[B]``: at every level the X and Y spatial factors fit the
  physical fan-out (``tol``: relative slack for real factors)."""
  fan_x = np.asarray(structure.fanout_x)[:, None] * (1 + tol)
  fan_y = np.asarray(structure.fanout_y)[:, None] * (1 + tol)
  return (jnp.all(jnp.prod(mapping.spatial_x, axis=1) <= fan_x, axis=0)
          & jnp.all(jnp.prod(mapping.spatial_y, axis=1) <= fan_y, axis=0))


def _capacity_ok(params: ArchParams, counts: access.AccessCounts) -> jax.Array:
  """``bool[B]``: the kept tiles fit every level's capacity and, where the
  capacity is finite, fill at least its minimum utilization."""
  used = jnp.sum(counts.utilized_capacity, axis=1).astype(jnp.float64)
  capacity = params.capacity[:, None]
  finite = jnp.isfinite(capacity)
  floor = jnp.where(finite, capacity, 0.0) * params.min_utilization[:, None]
  return jnp.all((used <= capacity) & ((used >= floor) | ~finite), axis=0)


def evaluate(structure: Structure, params: ArchParams,
             mapping: Mapping, bounds=None) -> Stats:
  """Timeloop's per-level statistics of one mapping.

  Args:
    structure: static arch/problem structure (hashable).
    params: architecture numbers (ERT energies, capacities, bandwidths).
    mapping: one mapping (no batch axis); fields ``[L, D]``/``[L, S]``.
    bounds: ``[D]`` dim bounds as data (see :func:`evaluate_last`).

  Returns:
    ``Stats`` with ``[L, S]`` per-instance counts, energies, cycles and
    validity flags: :func:`evaluate_last` on a block of one.
  """
  require_x64()
  out = evaluate_last(structure, params, access.batch_last(mapping), bounds)
  return jax.tree.map(lambda x: x[..., 0], out)


def default_block() -> int:
  """Mappings per batch-last block (the lanes C of the blocked layout).

  On CPU a block's intermediates should stay in the core's caches: with
  one JAX device per core (the command line's runtime), blocks of 64;
  one device spanning several cores splits large kernels over them, which
  favours 1024.  Accelerators take one block of up to 2**17 mappings per
  kernel sequence.  Depends only on JAX's backend and device count.
  """
  if jax.default_backend() != "cpu":
    return 1 << 17
  return 64 if jax.local_device_count() > 1 else 1024


def evaluate_batch(structure: Structure, params: ArchParams,
                   mappings: Mapping, chunk: int | None = None,
                   bounds=None) -> Stats:
  """:func:`evaluate` over a leading batch axis ``[B, ...]`` (traceable).

  Rows are independent.  The batch is cut into blocks of ``chunk`` rows
  (default :func:`default_block`), each moved to the batch-last layout and
  run by :func:`evaluate_last` in a loop that writes its rows of the
  output in place (``bounds``: see :func:`evaluate_last`).  When
  ``chunk`` does not divide ``B`` the last block
  starts at ``B - chunk`` and recomputes some rows of the one before (the
  same values): no padded copy of the input and no sliced copy of the
  output.
  """
  require_x64()
  chunk = default_block() if chunk is None else int(chunk)

  def block(m):
    """One block, batch-first in and out; layouts change on hot data."""
    m = jax.tree.map(lambda x: jnp.moveaxis(x, 0, -1), m)
    stats = evaluate_last(structure, params, m, bounds)
    return jax.tree.map(lambda x: jnp.moveaxis(x, -1, 0), stats)

  batch = jax.tree.leaves(mappings)[0].shape[0]
  if batch <= chunk:
    return block(mappings)
  shapes = jax.eval_shape(
      block, jax.tree.map(lambda x: x[:chunk], mappings))
  out = loop_buffers(jax.tree.map(
      lambda a: jax.ShapeDtypeStruct((batch,) + a.shape[1:], a.dtype),
      shapes), mappings)

  def body(k, out):
    start = jnp.minimum(k * chunk, batch - chunk)
    rows = jax.tree.map(
        lambda x: jax.lax.dynamic_slice_in_dim(x, start, chunk), mappings)
    return jax.tree.map(
        lambda o, r: jax.lax.dynamic_update_slice_in_dim(o, r, start, 0),
        out, block(rows))

  return jax.lax.fori_loop(0, -(-batch // chunk), body, out)


def loop_buffers(shapes, like):
  """Zero output buffers ``shapes`` (ShapeDtypeStructs) for a loop that
  writes them block by block.  Inside ``shard_map`` they vary over the
  mesh axes that ``like`` (the loop's input) varies over: the loop's carry
  types must match."""
  vary = _varying_axes(jax.tree.leaves(like)[0])

  def buffer(a):
    z = jnp.zeros(a.shape, a.dtype)
    return jax.lax.pcast(z, vary, to="varying") if vary else z

  return jax.tree.map(buffer, shapes)


def _varying_axes(x) -> tuple:
  """Mesh axes ``x`` varies over inside ``shard_map`` (none outside)."""
  aval = jax.typeof(x)
  axes = getattr(getattr(aval, "manual_axis_type", None), "varying", None)
  if axes is None:
    axes = getattr(aval, "vma", ())
  return tuple(sorted(axes))

