"""Fixed-width numeric features of mappings, layers and architectures.

Learned models (surrogates, policies) need one input width for every
(architecture, layer) pair, so every feature vector is padded to fixed
maxima: :data:`MAX_LEVELS` storage levels (Timeloop's levels, innermost
first, storage-less ``inter_*_spatial`` levels included), :data:`MAX_DIMS`
problem dimensions (in the problem's own order, e.g. ``C M R S N P Q G``
for Timeloop's ``problem_base``) and :data:`MAX_DATASPACES` data spaces.
Padded slots are 0.  A structure beyond a maximum raises a
:class:`~jaxloop.errors.SpecError` naming it.

Three vectors, each with a name per column (``*_feature_names``):

* :func:`encode_mapping`: ``f32[..., F_map]`` of a mapping (batch axes
  kept): per level and dim ``log2`` of the temporal, spatial X and spatial
  Y factors and the loop's position in the level's order (0 innermost;
  Timeloop's permutation inverted), then per level and data space the keep
  bit.  Columns ``log2_temporal/l{l}/d{d}``, ``log2_spatial_x/...``,
  ``log2_spatial_y/...``, ``order_position/l{l}/d{d}``,
  ``keep/l{l}/s{s}``; ``F_map = 4 * MAX_LEVELS * MAX_DIMS + MAX_LEVELS *
  MAX_DATASPACES``.  Traceable and differentiable in the factors and keep
  weights (real factors and soft keeps of :mod:`jaxloop.relax` work too).
* :func:`layer_features`: ``f32[F_layer]`` of the problem: ``log2`` of each
  dim's bound, per data space and dim the projection coefficient (strides
  and dilations of sliding windows) and whether the dim shares a rank with
  another (a window), per data space ``log2`` of its size and whether it is
  read-write, and ``log2`` of the operation count.
* :func:`arch_features`: ``f32[F_arch]`` of the architecture: per level
  presence, storage-less, DRAM, ``log2`` instances, fan-outs X/Y, capacity
  (words per instance; a flag when unbounded), word bits and block size,
  ``log2(1 + pJ)`` read, fill, update and leak energies, ``log2``
  bandwidths (flags when unlimited) and ``min_utilization``; then the
  compute units' ``log2`` instances, ``log2(1 + pJ)`` energy and word bits.
  Energies, capacities and bandwidths come from ``ArchParams`` (data, jnp:
  a sweep over them is traceable).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxloop.errors import SpecError
from jaxloop.structure import Structure
from jaxloop.types import ArchParams, Mapping

MAX_LEVELS = 12
MAX_DIMS = 8
MAX_DATASPACES = 4

_MAPPING_FIELDS = ("log2_temporal", "log2_spatial_x", "log2_spatial_y",
                   "order_position")
_LEVEL_FIELDS = ("present", "storage_less", "dram", "log2_instances",
                 "log2_fanout_x", "log2_fanout_y", "log2_capacity",
                 "unbounded_capacity", "log2_word_bits", "log2_block_size",
                 "log2_read_pj", "log2_fill_pj", "log2_update_pj",
                 "log2_leak_pj", "log2_read_bandwidth", "unlimited_read",
                 "log2_write_bandwidth", "unlimited_write",
                 "log2_shared_bandwidth", "unlimited_shared",
                 "min_utilization")
_COMPUTE_FIELDS = ("compute/log2_instances", "compute/log2_energy_pj",
                   "compute/log2_word_bits")


def check_fits(structure: Structure, where: str = "") -> None:
  """Raises SpecError if ``structure`` exceeds the feature maxima."""
  for what, n, most in (("storage levels", structure.num_levels, MAX_LEVELS),
                        ("problem dimensions", structure.num_dims, MAX_DIMS),
                        ("data spaces", structure.num_dataspaces,
                         MAX_DATASPACES)):
    if n > most:
      raise SpecError(
          f"{n} {what}; the research features hold at most {most}",
          path="architecture" if what == "storage levels" else "problem",
          where=where,
          hint="Raise MAX_LEVELS/MAX_DIMS/MAX_DATASPACES in "
          "jaxloop/research/features.py (widths of every saved model "
          "change with them).")


# ----------------------------------------------------------------- mapping
def mapping_feature_names() -> list[str]:
  """Column names of :func:`encode_mapping`, ``[F_map]``."""
  names = [f"{f}/l{l}/d{d}" for f in _MAPPING_FIELDS
           for l in range(MAX_LEVELS) for d in range(MAX_DIMS)]
  return names + [f"keep/l{l}/s{s}" for l in range(MAX_LEVELS)
                  for s in range(MAX_DATASPACES)]


def mapping_width() -> int:
  """``F_map``."""
  return (len(_MAPPING_FIELDS) * MAX_LEVELS * MAX_DIMS
          + MAX_LEVELS * MAX_DATASPACES)


def order_positions(order: jax.Array) -> jax.Array:
  """``f32[..., L, D]`` position of each dim's loop in its level's order
  (0 innermost) from Timeloop's permutation ``order [..., L, D]`` (dim of
  the k-th loop)."""
  D = order.shape[-1]
  onehot = jax.nn.one_hot(order, D, dtype=jnp.float32)   # [..., L, K, D]
  return jnp.einsum("...lkd,k->...ld", onehot,
                    jnp.arange(D, dtype=jnp.float32))


def _pad(a: jax.Array, rows: int, cols: int) -> jax.Array:
  """Last two axes zero-padded to ``[rows, cols]``."""
  pad = [(0, 0)] * (a.ndim - 2) + [(0, rows - a.shape[-2]),
                                   (0, cols - a.shape[-1])]
  return jnp.pad(a, pad)


def encode_mapping(mapping: Mapping) -> jax.Array:
  """``f32[..., F_map]`` features of a mapping or a batch (leaves
  ``[..., L, D]``/``[..., L, S]``); see the module docstring for columns.

  Integer or real factors, bool or soft (``[0, 1]``) keep bits; traceable.

  Raises:
    SpecError: more levels, dims or data spaces than the maxima.
  """
  L, D = mapping.temporal.shape[-2:]
  S = mapping.keep.shape[-1]
  if L > MAX_LEVELS or D > MAX_DIMS or S > MAX_DATASPACES:
    raise SpecError(
        f"a mapping with {L} levels, {D} dims, {S} data spaces exceeds the "
        f"feature maxima ({MAX_LEVELS}, {MAX_DIMS}, {MAX_DATASPACES})",
        path="mapping", hint="Raise the maxima in jaxloop/research/"
        "features.py.")
  log2 = lambda a: jnp.log2(jnp.asarray(a).astype(jnp.float32))
  return encode_planes(log2(mapping.temporal), log2(mapping.spatial_x),
                       log2(mapping.spatial_y),
                       order_positions(mapping.order), mapping.keep)


def encode_planes(log2_temporal, log2_spatial_x, log2_spatial_y, positions,
                  keep) -> jax.Array:
  """``f32[..., F_map]`` from the parts :func:`encode_mapping` computes:
  ``[..., L, D]`` log2 factors and loop positions, ``[..., L, S]`` keep
  weights.  Soft positions (a relaxed loop order) are welcome: surrogate
  search differentiates through all five."""
  planes = [_pad(jnp.asarray(p, jnp.float32), MAX_LEVELS, MAX_DIMS)
            for p in (log2_temporal, log2_spatial_x, log2_spatial_y,
                      positions)]
  keep = _pad(jnp.asarray(keep).astype(jnp.float32), MAX_LEVELS,
              MAX_DATASPACES)
  batch = planes[0].shape[:-2]
  return jnp.concatenate(
      [p.reshape(batch + (-1,)) for p in planes]
      + [keep.reshape(batch + (-1,))], axis=-1)


# ------------------------------------------------------------------- layer
def layer_feature_names() -> list[str]:
  """Column names of :func:`layer_features`, ``[F_layer]``."""
  names = [f"log2_bound/d{d}" for d in range(MAX_DIMS)]
  for field in ("coefficient", "window"):
    names += [f"{field}/s{s}/d{d}" for s in range(MAX_DATASPACES)
              for d in range(MAX_DIMS)]
  names += [f"log2_size/s{s}" for s in range(MAX_DATASPACES)]
  names += [f"read_write/s{s}" for s in range(MAX_DATASPACES)]
  return names + ["log2_ops"]


def dataspace_sizes(structure: Structure) -> np.ndarray:
  """``i64[S]`` points in each data space: per rank ``1 + sum coef *
  (bound - 1)`` (a sliding window's extent), multiplied over ranks."""
  proj = structure.projection_array()                      # [S, R, D]
  extent = 1 + proj @ (np.asarray(structure.dim_bounds, np.int64) - 1)
  return np.prod(extent, axis=-1)


def layer_features(structure: Structure) -> np.ndarray:
  """``f32[F_layer]`` features of the problem (see module docstring).

  Raises:
    SpecError: more dims or data spaces than the maxima.
  """
  check_fits(structure)
  S, D = structure.num_dataspaces, structure.num_dims
  bounds = np.zeros(MAX_DIMS)
  bounds[:D] = np.log2(structure.dim_bounds)
  coef = np.zeros((MAX_DATASPACES, MAX_DIMS))
  window = np.zeros((MAX_DATASPACES, MAX_DIMS))
  for s, ranks in enumerate(structure.rank_terms):
    for terms in ranks:
      for d, c in terms:
        coef[s, d] = c
        window[s, d] = float(len(terms) > 1)
  size = np.zeros(MAX_DATASPACES)
  size[:S] = np.log2(dataspace_sizes(structure))
  rw = np.zeros(MAX_DATASPACES)
  rw[:S] = structure.read_write
  return np.concatenate([bounds, coef.ravel(), window.ravel(), size, rw,
                         [np.log2(structure.num_ops)]]).astype(np.float32)


# ------------------------------------------------------------ architecture
def arch_feature_names() -> list[str]:
  """Column names of :func:`arch_features`, ``[F_arch]``."""
  return [f"{f}/l{l}" for f in _LEVEL_FIELDS
          for l in range(MAX_LEVELS)] + list(_COMPUTE_FIELDS)


def _finite_log2(x: jax.Array) -> tuple[jax.Array, jax.Array]:
  """``(log2 x` where finite else 0, 1.0 where infinite)``."""
  x = jnp.asarray(x, jnp.float32)
  inf = jnp.isinf(x)
  return jnp.where(inf, 0.0, jnp.log2(jnp.where(inf, 1.0, x))), inf.astype(
      jnp.float32)


def arch_features(structure: Structure, params: ArchParams) -> jax.Array:
  """``f32[F_arch]`` features of the architecture (module docstring);
  traceable in ``params``.

  Raises:
    SpecError: more levels than :data:`MAX_LEVELS`.
  """
  check_fits(structure)
  s = structure
  f32 = lambda a: jnp.asarray(np.asarray(a, np.float32))
  log1p2 = lambda e: jnp.log2(1.0 + jnp.asarray(e, jnp.float32))
  cap, unbounded = _finite_log2(params.capacity)
  bw = [_finite_log2(b) for b in (params.read_bandwidth,
                                  params.write_bandwidth,
                                  params.shared_bandwidth)]
  rows = [jnp.ones(s.num_levels), f32(s.is_dummy), f32(s.is_dram),
          jnp.log2(f32(s.instances)), jnp.log2(f32(s.fanout_x)),
          jnp.log2(f32(s.fanout_y)), cap, unbounded,
          jnp.log2(f32(s.word_bits)), jnp.log2(f32(s.block_size)),
          log1p2(params.read_energy), log1p2(params.fill_energy),
          log1p2(params.update_energy), log1p2(params.leak_energy),
          bw[0][0], bw[0][1], bw[1][0], bw[1][1], bw[2][0], bw[2][1],
          jnp.asarray(params.min_utilization, jnp.float32)]
  levels = jnp.stack(rows)                                  # [F, L]
  levels = jnp.pad(levels, ((0, 0), (0, MAX_LEVELS - s.num_levels)))
  compute = jnp.stack([jnp.log2(jnp.float32(s.compute_instances)),
                       log1p2(params.compute_energy),
                       jnp.log2(jnp.float32(s.compute_word_bits))])
  return jnp.concatenate([levels.reshape(-1), compute])


def workload_features(workload) -> tuple[np.ndarray, np.ndarray]:
  """``(layer f32[F_layer], arch f32[F_arch])`` of a loaded workload
  (numpy)."""
  check_fits(workload.structure, workload.sources)
  return (layer_features(workload.structure),
          np.asarray(arch_features(workload.structure, workload.params)))
