"""Pytrees that flow through the model: Mapping, ArchParams, Stats.

Shapes use these axis names:
  B: batch of mappings: leading (``[B, L, D]``) in the public API, trailing
     (``[L, D, B]``) inside the model (``evaluate_last``, see
     :mod:`jaxloop.model.tiling`); the blocked layout holds it as blocks
     and lanes, ``[nb, L, D, C]`` (:mod:`jaxloop.model.blocks`)
  L: storage levels, innermost first (Timeloop's levels 1..L)
  D: problem dimensions
  S: data spaces
"""
from __future__ import annotations

import dataclasses

import jax
import numpy as np

Array = jax.Array

# Integer loop factors: every factor divides a problem bound, and bounds
# are below 2**30 (``structure.MAX_BOUND``).  Half the bytes of int64, which
# the model reads (and turns batch-last) once per mapping; products of
# factors are taken in int64 or float64.
FACTOR_DTYPE = np.int32


def _pytree(cls=None, *, meta=()):
  """Frozen dataclass registered as a pytree; fields in ``meta`` are static."""

  def wrap(c):
    c = dataclasses.dataclass(frozen=True)(c)
    names = [f.name for f in dataclasses.fields(c)]
    return jax.tree_util.register_dataclass(
        c, data_fields=[n for n in names if n not in meta],
        meta_fields=list(meta))

  return wrap if cls is None else wrap(cls)


@_pytree
class Mapping:
  """One mapping (or a batch: a leading B axis on every field, or a
  trailing one inside the model).

  Attributes:
    temporal: ``[L, D]`` temporal loop bound of each dim at each level.
    spatial_x: ``[L, D]`` spatial factor of each dim along X at level l
      (fan-out from level l to the instances of level l-1, or to the compute
      units for l = 0).
    spatial_y: ``[L, D]`` likewise along Y.
    order: ``i32[L, D]`` temporal loop order: ``order[l, k]`` is the dim of
      the k-th loop of level l, innermost first (Timeloop's permutation).
    keep: ``bool[L, S]``: level l keeps data space s (False = bypass).

  The discrete model takes integer factors (any integer dtype; jaxloop's
  parsers and generators give ``FACTOR_DTYPE``, int32); the relaxed search
  passes real factors (``exp`` of free parameters) and soft keep weights
  in [0, 1].
  """
  temporal: Array
  spatial_x: Array
  spatial_y: Array
  order: Array
  keep: Array


@_pytree
class ArchParams:
  """Numbers of the architecture that a sweep may vary (not shapes).

  Attributes:
    read_energy, fill_energy, update_energy: ``[L]`` pJ per vector access
      (ERT actions read; write for fills; update, else write, for updates).
    leak_energy: ``[L]`` pJ per instance per cycle (ERT leak).
    compute_energy: ``[]`` pJ per compute.
    capacity: ``[L]`` effective words per instance
      (``floor(size / multiple_buffering)``; ``inf`` when unbounded).
    min_utilization: ``[L]`` Timeloop ``min_utilization``.
    read_bandwidth, write_bandwidth, shared_bandwidth: ``[L]`` words/cycle
      per instance (``inf`` when unlimited).
    area: ``[L]`` um^2 per instance; ``compute_area``: ``[]``.
  """
  read_energy: Array
  fill_energy: Array
  update_energy: Array
  leak_energy: Array
  compute_energy: Array
  capacity: Array
  min_utilization: Array
  read_bandwidth: Array
  write_bandwidth: Array
  shared_bandwidth: Array
  area: Array
  compute_area: Array


@_pytree
class Stats:
  """Everything the model reports for one mapping (or a batch).

  Per-instance counts follow Timeloop's stats.txt (``Scalar reads
  (per-instance)`` etc.).  Bypassed (level, data space) pairs are zero.

  Attributes:
    reads, fills, updates, temporal_reductions: ``[L, S]`` per instance.
    utilized_capacity: ``[L, S]`` words (tile size).
    utilized_instances: ``[L, S]``.
    link_transfers: ``[L, S]`` words the children of one level-l instance
      pass to mesh neighbours instead of fetching them (Timeloop's link
      transfers; they add to the children's reads and fills).
    energy: ``[L, S]`` pJ, all instances (dynamic access energy).
    leakage: ``[L]`` pJ, all instances.
    level_energy: ``[L]`` pJ: dynamic energy of all data spaces + leakage.
    level_cycles: ``[L]`` cycles each level needs (bandwidth-limited).
    computes: ``[]`` MACs; compute_utilized_instances: ``[]``.
    compute_energy: ``[]`` pJ.
    cycles: ``[]`` total cycles; energy_total: ``[]`` pJ.
    utilization: ``[]`` fraction of compute units busy.
    area: ``[]`` um^2.
    capacity_ok, fanout_ok, factors_ok: ``bool[]`` validity parts.
    valid: ``bool[]`` all of them.
  """
  reads: Array
  fills: Array
  updates: Array
  temporal_reductions: Array
  utilized_capacity: Array
  utilized_instances: Array
  link_transfers: Array
  energy: Array
  leakage: Array
  level_energy: Array
  level_cycles: Array
  computes: Array
  compute_utilized_instances: Array
  compute_energy: Array
  cycles: Array
  energy_total: Array
  utilization: Array
  area: Array
  capacity_ok: Array
  fanout_ok: Array
  factors_ok: Array
  valid: Array

  def only(self, names) -> "Stats":
    """These statistics with only the fields ``names`` kept (the others
    None: an evaluation picking them never writes the rest)."""
    keep = set(names)
    return Stats(**{f.name: (getattr(self, f.name) if f.name in keep
                             else None) for f in dataclasses.fields(self)})

  @property
  def edp(self):
    """Energy-delay product in J*cycles (Timeloop's ``EDP(J*cycle)``):
    :func:`edp` of ``energy_total`` and ``cycles``."""
    return edp(self.energy_total, self.cycles)


def edp(energy_pj, cycles):
  """Timeloop's energy-delay product, J*cycles: ``energy_pj * 1e-12 *
  cycles`` (numpy or jax, any shape).  The one place the formula is
  written: :attr:`Stats.edp` and the searches' and streams' EDP objective
  use it."""
  return energy_pj * 1e-12 * cycles
