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
  """One random move per genome (where a move of the drawn kind exists)."""
  n = len(g)
  fidx, order, keep = g.fidx.copy(), g.order.copy(), g.keep.copy()
  L = ms.structure.num_levels
  movable = [d for d, ds in enumerate(ms.dims) if len(ds.table) > 1]
  swap_levels = [l for l in range(L) if len(ms.free_order[l]) >= 2]
  nfree_keep = len(ms.free_keep)
  w = np.asarray(MOVE_WEIGHTS, np.float64)
  w *= np.asarray([bool(movable), bool(movable), bool(swap_levels),
                   nfree_keep > 0], np.float64)
  if w.sum() == 0:
    return Genome(fidx, order, keep)
  kind = rng.choice(4, size=n, p=w / w.sum())

  # Factor moves (kinds 0 and 1).
  fsel = np.nonzero(kind <= 1)[0]
  if len(fsel):
    dch = np.asarray(movable)[rng.integers(0, len(movable), len(fsel))]
    for d in movable:
      rows = fsel[dch == d]
      if not len(rows):
        continue
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

  # Loop swaps (kind 2): two free positions whose loops have factor > 1.
  ssel = np.nonzero(kind == 2)[0]
  if len(ssel):
    lch = np.asarray(swap_levels)[rng.integers(0, len(swap_levels),
                                               len(ssel))]
    for l in swap_levels:
      rows = ssel[lch == l]
      if not len(rows):
        continue
      start = len(ms.prefix[l])
      ordl = order[rows, l].astype(np.int64)                      # [r, D]
      tl = np.stack([ms.dims[d].table[fidx[rows, d], l]
                     for d in range(len(ms.dims))], axis=1)       # [r, D]
      fac = np.take_along_axis(tl, ordl, axis=1)
      cand = fac > 1
      cand[:, :start] = False
      keys = np.where(cand, rng.random(cand.shape), np.inf)
      two = np.argsort(keys, axis=1)[:, :2]
      ok = cand.sum(axis=1) >= 2
      r = np.arange(len(rows))
      a, b = two[:, 0], two[:, 1]
      va, vb = ordl[r, a], ordl[r, b]
      ordl[r, a] = np.where(ok, vb, va)
      ordl[r, b] = np.where(ok, va, vb)
      order[rows, l] = ordl

  # Bypass flips (kind 3).
  ksel = np.nonzero(kind == 3)[0]
  if len(ksel):
    bit = ms.free_keep[rng.integers(0, nfree_keep, len(ksel))]
    keep[ksel, bit[:, 0], bit[:, 1]] ^= True
  return Genome(fidx, order, keep)


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
