"""Problem dimensions of bound 1 are dropped before the model runs.

A dim whose bound is 1 (N = 1 in most convs; R, S, P, Q in a GEMM written
as a conv) has factor 1 at every level of every legal mapping: its loops
never iterate and its data-space extent is always 1, so it adds nothing to
any count.  Removing it from the static structure shrinks every ``[.., D]``
and ``[.., R]`` array the model builds (a 7-dim GEMM-as-conv becomes a
3-dim one), which is the model's largest cost factor.  Mappings that put a
factor other than 1 on such a dim are illegal; ``evaluate`` flags them from
the full mapping (``factors_ok``), so their counts do not matter.
"""
from __future__ import annotations

import dataclasses
import functools

import jax.numpy as jnp
import numpy as np

from jaxloop.structure import Structure
from jaxloop.types import Mapping


@functools.lru_cache(maxsize=256)
def reduced(structure: Structure) -> tuple[Structure, tuple[int, ...]]:
  """``(structure without bound-1 dims, kept dim indices)``.

  Projection ranks left without any dim are removed and the rank axis is
  re-padded to the new largest rank count.  Returns ``structure`` itself
  when every dim has a bound above 1 (or when all are 1: one dim is kept so
  that arrays stay non-empty).
  """
  kept = tuple(d for d, b in enumerate(structure.dim_bounds) if b > 1)
  if len(kept) == structure.num_dims:
    return structure, kept
  if not kept:
    kept = (0,)
  new_index = {d: j for j, d in enumerate(kept)}
  projection, rank_terms = [], []
  for rows, terms_of_ds in zip(structure.projection, structure.rank_terms):
    ranks = [(tuple(row[d] for d in kept),
              tuple((new_index[d], c) for d, c in terms if d in new_index))
             for row, terms in zip(rows, terms_of_ds)]
    ranks = [(row, terms) for row, terms in ranks if terms]
    projection.append([row for row, _ in ranks])
    rank_terms.append([terms for _, terms in ranks])
  max_rank = max(1, max(len(p) for p in projection))
  for p, t in zip(projection, rank_terms):
    while len(p) < max_rank:
      p.append((0,) * len(kept))
      t.append(())
  small = dataclasses.replace(
      structure,
      dim_names=tuple(structure.dim_names[d] for d in kept),
      dim_bounds=tuple(structure.dim_bounds[d] for d in kept),
      projection=tuple(tuple(p) for p in projection),
      rank_terms=tuple(tuple(t) for t in rank_terms))
  return small, kept


def restrict(mapping: Mapping, kept: tuple[int, ...]) -> Mapping:
  """Mappings (batch-last, ``[L, D, B]`` fields) restricted to ``kept`` dims.

  Loop orders keep their length and the positions of all loops; the kept
  dims are renumbered ``0..K-1`` and a dropped dim's loop (which never
  iterates) becomes ``-1`` (see :func:`jaxloop.model.access.loop_positions`),
  so no permutation is compacted.
  """
  D = mapping.temporal.shape[1]
  if len(kept) == D:
    return mapping
  order = mapping.order.astype(jnp.int32)                          # [L,D,B]
  dropped = [d for d in range(D) if d not in kept]
  new_order = order
  for d in dropped:   # kept dims above d move down by one
    new_order = new_order - (order > d).astype(jnp.int32)
  is_dropped = functools.reduce(jnp.logical_or, [order == d for d in dropped])
  return Mapping(temporal=_take_dims(mapping.temporal, kept),
                 spatial_x=_take_dims(mapping.spatial_x, kept),
                 spatial_y=_take_dims(mapping.spatial_y, kept),
                 order=jnp.where(is_dropped, np.int32(-1), new_order),
                 keep=mapping.keep)


def _take_dims(x, kept: tuple[int, ...]):
  """``x[:, kept]``: one gather with static indices (XLA:CPU copies a
  concatenation of slices element by element)."""
  return x[:, np.asarray(kept)]
