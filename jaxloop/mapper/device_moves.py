"""The evolutionary search's moves and hashing in ``jax.numpy`` (traceable),
on batch-first genomes of one mapspace.

A genome batch is ``(fidx i64[B, D], order i32[B, L, D], keep bool[B, L,
S])`` (:class:`jaxloop.mapspace.Genome` as jax arrays).  The moves are those
of :mod:`jaxloop.mapper.evolve` (re-split one prime of a dim between two free
slots, redraw a dim's factorization, swap two non-unit loops in free
positions of a level, flip one free keep/bypass bit), with one random kind
per genome; a factor move that breaks a fan-out is undone.  Every genome
stays in the mapspace.  :func:`canonical_hash` equals
:meth:`jaxloop.mapspace.Mapspace.canonical_hash` bit for bit.
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from jaxloop.mapspace import TEMPORAL, Mapspace
from jaxloop.mapper import evolve


@dataclasses.dataclass(frozen=True)
class MoveTables:
  """The mapspace's numbers the moves read (numpy; constants of a trace).

  Attributes:
    table: ``i64[N, 3L]`` every dim's factorization rows, stacked;
      ``temporal`` ``[N, L]`` and ``spatial`` ``[N, P]`` (the fan-out
      slots) its columns the moves read.
    first: ``i64[D]`` offset of dim d's rows in ``table``; ``size``
      ``i64[D]`` their count.
    neighbors: ``i64[N, K]`` rows one prime move away, local to the dim
      (``-1`` padding).
    movable: dims with more than one row; ``swap_levels``: levels with two
      free loop positions or more; ``prefix_len`` ``[L]``.
    free_keep: ``[F, 2]`` free (level, data space) bits.
    spatial_slots ``[P]``, caps ``[P]``: the fan-out limits.
    weights: ``f64[4]`` move-kind probabilities (0 for impossible kinds).
  """
  table: np.ndarray
  temporal: np.ndarray
  spatial: np.ndarray
  first: np.ndarray
  size: np.ndarray
  neighbors: np.ndarray
  movable: np.ndarray
  swap_levels: np.ndarray
  prefix_len: np.ndarray
  free_keep: np.ndarray
  spatial_slots: np.ndarray
  caps: np.ndarray
  weights: np.ndarray

  @classmethod
  def of(cls, ms: Mapspace) -> "MoveTables":
    tables = [np.asarray(ds.table, np.int64) for ds in ms.dims]
    width = max(ds.neighbors.shape[1] for ds in ms.dims)
    nbrs = [np.pad(ds.neighbors, ((0, 0), (0, width - ds.neighbors.shape[1])),
                   constant_values=-1) for ds in ms.dims]
    w = evolve._move_weights(ms)
    table = np.concatenate(tables)
    L = ms.structure.num_levels
    return cls(
        table=table, temporal=table[:, TEMPORAL * L:(TEMPORAL + 1) * L],
        spatial=table[:, np.asarray(ms.spatial_slots, np.int64)],
        first=np.cumsum([0] + [len(t) for t in tables[:-1]]).astype(np.int64),
        size=np.asarray([len(t) for t in tables], np.int64),
        neighbors=np.concatenate(nbrs).astype(np.int64),
        movable=np.asarray(evolve._movable_dims(ms) or [0], np.int64),
        swap_levels=np.asarray(evolve._swap_levels(ms) or [0], np.int64),
        prefix_len=np.asarray([len(p) for p in ms.prefix], np.int64),
        free_keep=(np.asarray(ms.free_keep, np.int64).reshape(-1, 2)
                   if len(ms.free_keep) else np.zeros((1, 2), np.int64)),
        spatial_slots=np.asarray(ms.spatial_slots, np.int64),
        caps=np.asarray(ms.caps, np.int64),
        weights=w / max(w.sum(), 1e-300))


def temporal_factors(t: MoveTables, fidx: jax.Array, num_levels: int
                     ) -> jax.Array:
  """``i64[B, L, D]`` temporal factors of the rows ``fidx [B, D]``."""
  rows = jnp.asarray(t.temporal)[fidx + jnp.asarray(t.first)[None, :]]
  return jnp.swapaxes(rows, 1, 2)                              # [B, L, D]


def spatial_ok(t: MoveTables, fidx: jax.Array) -> jax.Array:
  """``bool[B]``: the spatial products of ``fidx [B, D]`` fit the fan-outs.
  """
  if not len(t.caps):
    return jnp.ones(fidx.shape[0], bool)
  rows = jnp.asarray(t.spatial)[fidx + jnp.asarray(t.first)[None, :]]
  prod = jnp.prod(rows, axis=1)                                 # [B, P]
  return jnp.all(prod <= jnp.asarray(t.caps)[None, :], axis=1)


def mutate(t: MoveTables, key: jax.Array, genome: tuple, num_levels: int
           ) -> tuple:
  """One random move per genome (kinds drawn with ``t.weights``); rows
  whose drawn kind has no room keep their genome."""
  fidx, order, keep = genome
  B = fidx.shape[0]
  u = jax.random.uniform(key, (8, B), jnp.float64)
  edges = jnp.asarray(np.cumsum(t.weights)[:-1])
  kind = jnp.sum(u[0][:, None] >= edges[None, :], axis=1)
  fidx = _factor_move(t, u[1:4], fidx, kind)
  order = _loop_swap(t, u[4:7], fidx, order, kind == 2, num_levels)
  keep = _bypass_flip(t, u[7], keep, kind == 3)
  return fidx, order, keep


def _index(u: jax.Array, n) -> jax.Array:
  """``floor(u * n)`` clipped to ``n - 1``: a uniform index below ``n``."""
  return jnp.minimum((u * n).astype(jnp.int64), jnp.maximum(n - 1, 0))


def _factor_move(t: MoveTables, u: jax.Array, fidx: jax.Array,
                 kind: jax.Array) -> jax.Array:
  """Kinds 0 (one prime to a neighbouring row) and 1 (a fresh row) on a
  random movable dim of each row ``fidx [B, D]`` (uniforms ``u [3, B]``);
  undone where a fan-out breaks."""
  B, D = fidx.shape
  d = jnp.asarray(t.movable)[_index(u[0], len(t.movable))]
  cur = jnp.take_along_axis(fidx, d[:, None], axis=1)[:, 0]
  nb = jnp.asarray(t.neighbors)[jnp.asarray(t.first)[d] + cur]  # [B, K]
  deg = jnp.sum(nb >= 0, axis=1)
  pick = _index(u[1], deg)
  prime = jnp.where(deg > 0, jnp.take_along_axis(nb, pick[:, None], 1)[:, 0],
                    cur)
  redraw = _index(u[2], jnp.asarray(t.size)[d])
  new = jnp.where(kind == 0, prime, redraw)
  hit = (jnp.arange(D)[None, :] == d[:, None]) & (kind <= 1)[:, None]
  moved = jnp.where(hit, new[:, None], fidx)
  return jnp.where(spatial_ok(t, moved)[:, None], moved, fidx)


def _loop_swap(t: MoveTables, u: jax.Array, fidx: jax.Array,
               order: jax.Array, rows: jax.Array, num_levels: int
               ) -> jax.Array:
  """Kind 2: swaps two loops of factor > 1 in free positions of a random
  swap level (uniforms ``u [3, B]``), in rows ``rows [B]`` of ``order [B,
  L, D]`` that have two."""
  B, L, D = order.shape
  lvl = jnp.asarray(t.swap_levels)[_index(u[0], len(t.swap_levels))]
  ordl = jnp.take_along_axis(order, lvl[:, None, None], axis=1)[:, 0]
  tl = jnp.asarray(t.temporal)[fidx + jnp.asarray(t.first)[None, :],
                               lvl[:, None]]                    # [B, D]
  cand = ((jnp.take_along_axis(tl, ordl.astype(jnp.int64), axis=1) > 1)
          & (jnp.arange(D)[None, :]
             >= jnp.asarray(t.prefix_len)[lvl][:, None]))
  count = jnp.sum(cand, axis=1)
  rank = jnp.cumsum(cand, axis=1) - 1                           # [B, D]
  pos = jnp.arange(D)[None, :]
  first = _index(u[1], count)[:, None]
  a = jnp.argmax(cand & (rank == first), axis=1)[:, None]
  second = _index(u[2], count - 1)[:, None]
  second = second + (second >= first)          # skip a's rank
  b = jnp.argmax(cand & (rank == second), axis=1)[:, None]
  va = jnp.take_along_axis(ordl, a, 1)
  vb = jnp.take_along_axis(ordl, b, 1)
  swapped = jnp.where(pos == a, vb, jnp.where(pos == b, va, ordl))
  ok = rows & (count >= 2)
  at = (jnp.arange(L)[None, :] == lvl[:, None]) & ok[:, None]   # [B, L]
  return jnp.where(at[:, :, None], swapped[:, None, :], order)


def _bypass_flip(t: MoveTables, u: jax.Array, keep: jax.Array,
                 rows: jax.Array) -> jax.Array:
  """Kind 3: flips one free keep bit (uniform ``u [B]``) of ``keep [B, L,
  S]`` in ``rows``."""
  B, L, S = keep.shape
  f = _index(u, len(t.free_keep))
  bit = jnp.asarray(t.free_keep)[f]                             # [B, 2]
  at = ((jnp.arange(L)[None, :, None] == bit[:, 0, None, None])
        & (jnp.arange(S)[None, None, :] == bit[:, 1, None, None])
        & rows[:, None, None])
  return keep ^ at


def _sorted_by(keys: jax.Array, values: jax.Array) -> jax.Array:
  """``values`` ordered by ``keys`` along the last axis (keys distinct
  within a row), by pairwise comparisons: ``D**2`` elementwise operations
  per row instead of a comparison sort, XLA:CPU's slowest kernel."""
  D = keys.shape[-1]
  rank = jnp.sum(keys[..., None, :] < keys[..., :, None], axis=-1)  # [.., D]
  slot = jnp.arange(D).reshape((1,) * (keys.ndim - 1) + (1, D))
  return jnp.sum(jnp.where(rank[..., :, None] == slot, values[..., :, None],
                           0), axis=-2)


def canonical_hash(t: MoveTables, genome: tuple, num_levels: int
                   ) -> jax.Array:
  """``u64[B]``: :meth:`Mapspace.canonical_hash` of the genomes (unit
  loops moved behind the others by dim index, then fidx, that order and
  the keep bits hashed column by column)."""
  fidx, order, keep = genome
  B, L, D = order.shape
  temporal = temporal_factors(t, fidx, num_levels)
  order64 = order.astype(jnp.int64)
  t_in_order = jnp.take_along_axis(temporal, order64, axis=-1)
  sort_key = jnp.where(t_in_order > 1, jnp.arange(D)[None, None, :],
                       D + order64)                     # distinct per row
  canon = _sorted_by(sort_key, order64)
  cols = jnp.concatenate([fidx.reshape(B, -1), canon.reshape(B, -1),
                          keep.reshape(B, -1).astype(jnp.int64)], axis=1)
  cols = cols.astype(jnp.uint64)
  mul = jnp.uint64(0x9E3779B97F4A7C15)
  shift = jnp.uint64(29)
  h = jnp.full(B, 0x243F6A8885A308D3, jnp.uint64)
  for c in range(cols.shape[1]):
    h = (h ^ cols[:, c]) * mul
    h = h ^ (h >> shift)
  return h
