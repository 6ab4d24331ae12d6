"""Mutation operators on genomes (numpy, vectorized over the batch).

Moves: re-split one prime factor of a dim between two of its free slots,
re-draw a dim's whole factorization, swap two non-unit loops of a level,
flip one free keep/bypass bit.  Moves that break a fan-out are undone.
"""
from __future__ import annotations

import numpy as np

from jaxloop.mapspace import Genome, Mapspace

# Relative weights of: prime move, whole-dim redraw, loop swap, bypass flip.
MOVE_WEIGHTS = (0.55, 0.1, 0.25, 0.1)


def mutate(ms: Mapspace, rng: np.random.Generator, g: Genome) -> Genome:
  """One random move per genome (where a move of the drawn kind exists);
  the result stays in the mapspace."""
  fidx, order, keep = g.fidx.copy(), g.order.copy(), g.keep.copy()
  weights = _move_weights(ms)
  if weights.sum() == 0:
    return Genome(fidx, order, keep)
  kind = rng.choice(len(MOVE_WEIGHTS), size=len(g),
                    p=weights / weights.sum())
  _factor_moves(ms, rng, g, fidx, order, keep, kind)
  _loop_swaps(ms, rng, fidx, order, np.nonzero(kind == 2)[0])
  _bypass_flips(ms, rng, keep, np.nonzero(kind == 3)[0])
  return Genome(fidx, order, keep)


def _movable_dims(ms: Mapspace) -> list[int]:
  """Dims with more than one factorization."""
  return [d for d, ds in enumerate(ms.dims) if len(ds.table) > 1]


def _swap_levels(ms: Mapspace) -> list[int]:
  """Levels with at least two loops whose position is free."""
  return [l for l in range(ms.structure.num_levels)
          if len(ms.free_order[l]) >= 2]


def _by_random_choice(rng: np.random.Generator, rows: np.ndarray,
                      choices: list[int]):
  """Draws one of ``choices`` per row; yields ``(choice, rows that drew
  it)`` for every choice drawn at least once, in the order of ``choices``.
  """
  drawn = np.asarray(choices)[rng.integers(0, len(choices), len(rows))]
  for c in choices:
    if (drawn == c).any():
      yield c, rows[drawn == c]


def _move_weights(ms: Mapspace) -> np.ndarray:
  """:data:`MOVE_WEIGHTS`, zero for the kinds this mapspace has no room for.
  """
  possible = [bool(_movable_dims(ms))] * 2 + [bool(_swap_levels(ms)),
                                              len(ms.free_keep) > 0]
  return np.asarray(MOVE_WEIGHTS, np.float64) * np.asarray(possible,
                                                           np.float64)


def _factor_moves(ms: Mapspace, rng: np.random.Generator, g: Genome,
                  fidx: np.ndarray, order: np.ndarray, keep: np.ndarray,
                  kind: np.ndarray) -> None:
  """Kinds 0 (move one prime to a neighbouring factorization) and 1 (redraw
  the factorization) on a random movable dim, in place in ``fidx``; rows
  whose spatial factors no longer fit the fan-outs are undone."""
  rows_all = np.nonzero(kind <= 1)[0]
  if not len(rows_all):
    return
  for d, rows in _by_random_choice(rng, rows_all, _movable_dims(ms)):
    ds = ms.dims[d]
    cur = fidx[rows, d]
    nb = ds.neighbors[cur]
    deg = (nb >= 0).sum(axis=1)
    pick = np.minimum((rng.random(len(rows)) * deg).astype(np.int64),
                      np.maximum(deg - 1, 0))
    prime_move = np.where(deg > 0, nb[np.arange(len(rows)), pick], cur)
    redraw = rng.integers(0, len(ds.table), len(rows))
    fidx[rows, d] = np.where(kind[rows] == 0, prime_move, redraw)
  bad = ~ms.spatial_ok(Genome(fidx, order, keep))
  fidx[bad] = g.fidx[bad]


def _loop_swaps(ms: Mapspace, rng: np.random.Generator, fidx: np.ndarray,
                order: np.ndarray, rows_all: np.ndarray) -> None:
  """Kind 2: swaps two loops of factor > 1 in free positions of a random
  level, in place in ``order`` (rows without two such loops are kept)."""
  if not len(rows_all):
    return
  for l, rows in _by_random_choice(rng, rows_all, _swap_levels(ms)):
    start = len(ms.prefix[l])
    ordl = order[rows, l].astype(np.int64)                      # [r, D]
    tl = np.stack([ms.dims[d].table[fidx[rows, d], l]
                   for d in range(len(ms.dims))], axis=1)       # [r, D]
    cand = np.take_along_axis(tl, ordl, axis=1) > 1
    cand[:, :start] = False
    two = np.argsort(np.where(cand, rng.random(cand.shape), np.inf),
                     axis=1)[:, :2]
    ok = cand.sum(axis=1) >= 2
    r = np.arange(len(rows))
    a, b = two[:, 0], two[:, 1]
    va, vb = ordl[r, a], ordl[r, b]
    ordl[r, a] = np.where(ok, vb, va)
    ordl[r, b] = np.where(ok, va, vb)
    order[rows, l] = ordl


def _bypass_flips(ms: Mapspace, rng: np.random.Generator, keep: np.ndarray,
                  rows: np.ndarray) -> None:
  """Kind 3: flips one free keep/bypass bit, in place in ``keep``."""
  if not len(rows):
    return
  bit = ms.free_keep[rng.integers(0, len(ms.free_keep), len(rows))]
  keep[rows, bit[:, 0], bit[:, 1]] ^= True


def offspring(ms: Mapspace, rng: np.random.Generator, elites: Genome,
              n: int) -> Genome:
  """``n`` children of rank-biased parents with 1-3 moves each."""
  pick = np.minimum((len(elites) * rng.random(n) ** 2).astype(np.int64),
                    len(elites) - 1)
  child = mutate(ms, rng, elites.take(pick))
  for extra in (0.5, 0.2):
    sub = np.nonzero(rng.random(n) < extra)[0]
    if len(sub):
      moved = mutate(ms, rng, child.take(sub))
      child.fidx[sub], child.order[sub], child.keep[sub] = (
          moved.fidx, moved.order, moved.keep)
  return child
