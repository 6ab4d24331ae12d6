"""Tile shapes: extents of each level's tile in operation and data space.

Timeloop's nest puts, for every storage level l (innermost first), the
spatial loops of l (fan-out to the instances below) inside the temporal loops
of l.  The tile held by one instance of level l spans every loop at levels
<= l, so its extent along dim d is ``prod_{l' <= l} T[l', d] * S[l', d]``.

A box of operation-space extents ``E[d]`` projects onto data space s as a box
with extents ``e[s, r] = sum_d P[s, r, d] * (E[d] - 1) + 1`` (Timeloop's
ProjectLowHigh on the box corners); its size is ``prod_r e[s, r]``.

Batch-last layout.  The model's arrays carry the batch of mappings as their
*last* axis (``[L, D, B]``, written ``[..., B]``): every operation is then
an elementwise loop over B contiguous values, which the CPU vectorizes
(a leading batch axis leaves tiny inner loops over ranks and data spaces).
Static constants broadcast with a trailing unit axis.

Rank expressions.  Data spaces share ranks (``C`` in Weights and Inputs,
``M`` in Weights and Outputs); a rank is the linear form
``sum_(d, c) c * x_d`` of its ``(dim, coef)`` terms.  :func:`expressions`
lists the distinct forms once, so translations and overlaps are computed
per form ``[..., X, B]`` and multiplied into data spaces by static index
lists (no padded ranks, no ``[S, R, D]`` contractions).
"""
from __future__ import annotations

import functools
import typing

import jax
import jax.numpy as jnp

from jaxloop.structure import Structure
from jaxloop.types import Array, Mapping


class Expressions(typing.NamedTuple):
  """Distinct rank forms of a structure.

  Attributes:
    terms: ``[X]`` tuples of ``(dim, coef)``; each non-empty.
    of_dataspace: ``[S]`` tuples of indices into ``terms``, one per
      (non-padded) rank of the data space.
  """
  terms: tuple[tuple[tuple[int, int], ...], ...]
  of_dataspace: tuple[tuple[int, ...], ...]


@functools.lru_cache(maxsize=256)
def expressions(structure: Structure) -> Expressions:
  """The distinct rank forms and which data space uses which."""
  terms, of_ds = [], []
  for ranks in structure.rank_terms:
    idx = []
    for t in ranks:
      if not t:
        continue
      if t not in terms:
        terms.append(t)
      idx.append(terms.index(t))
    of_ds.append(tuple(idx))
  return Expressions(tuple(terms), tuple(of_ds))


def project(structure: Structure, op: Array) -> Array:
  """``[..., D, B]`` op-space vectors -> ``[..., X, B]`` rank forms."""
  out = []
  for t in expressions(structure).terms:
    v = None
    for d, c in t:
      term = op[..., d, :] if c == 1 else c * op[..., d, :]
      v = term if v is None else v + term
    out.append(v)
  if not out:
    return jnp.zeros(op.shape[:-2] + (0,) + op.shape[-1:], op.dtype)
  return jnp.stack(out, axis=-2)


def per_dataspace(structure: Structure, x: Array, reduce=jnp.multiply,
                  empty: float = 1.0) -> Array:
  """``[..., X, B]`` -> ``[..., S, B]``: ``reduce`` over each data space's
  rank forms (a data space without ranks gets ``empty``)."""
  out = []
  for idx in expressions(structure).of_dataspace:
    v = None
    for k in idx:
      v = x[..., k, :] if v is None else reduce(v, x[..., k, :])
    if v is None:
      v = jnp.full(x.shape[:-2] + x.shape[-1:], empty, x.dtype)
    out.append(v)
  return jnp.stack(out, axis=-2)


def running(op, x: Array, axis: int = 0, exclusive: bool = False,
            reverse: bool = False) -> Array:
  """Running ``op`` (``jnp.add`` or ``jnp.multiply``) along a short static
  axis, unrolled: XLA lowers ``cumsum``/``cumprod`` to a reduce-window,
  a separate slow kernel on CPU, while the unrolled form fuses with its
  neighbours.  ``exclusive`` starts from the identity; ``reverse`` runs
  from the end."""
  n = x.shape[axis]
  parts = [jax.lax.index_in_dim(x, k, axis, keepdims=False) for k in range(n)]
  order = range(n - 1, -1, -1) if reverse else range(n)
  identity = jnp.zeros_like if op is jnp.add else jnp.ones_like
  out, acc = [None] * n, None
  for k in order:
    nxt = parts[k] if acc is None else op(acc, parts[k])
    out[k] = (identity(parts[k]) if acc is None else acc) if exclusive else nxt
    acc = nxt
  return jnp.stack(out, axis=axis)


def sum_leading(x: Array) -> Array:
  """``x.sum(axis=0)`` as a matrix-vector product ``ones @ x``: XLA's CPU
  reduction over a leading axis is a slow separate kernel, a dot is a
  memory-speed one (float inputs; exact for integer values below 2**53).
  """
  n = x.shape[0]
  flat = x.reshape(n, -1)
  return (jnp.ones((1, n), x.dtype) @ flat).reshape(x.shape[1:])


def spatial_factors(m: Mapping) -> Array:
  """``[L, D, B]`` total spatial factor (X times Y) of each dim per level."""
  return m.spatial_x * m.spatial_y


def cumulative_extents(m: Mapping) -> Array:
  """``[L + 1, D, B]``: ``cum[l]`` is the op-space extent of level l-1's tile.

  ``cum[0]`` is a single operation (all ones); ``cum[l + 1]`` is the tile of
  storage level l (all loops at levels <= l, spatial included).
  """
  per_level = m.temporal * spatial_factors(m)
  ones = jnp.ones_like(per_level[:1])
  return running(jnp.multiply, jnp.concatenate([ones, per_level], axis=0))


def dataspace_extents(structure: Structure, op_extents: Array) -> Array:
  """``[..., D, B]`` op-space box extents -> ``[..., X, B]`` extents along
  every rank form (``sum c * (E - 1) + 1``)."""
  return project(structure, op_extents - 1) + 1


def box_size(structure: Structure, op_extents: Array) -> Array:
  """``[..., S, B]`` number of data points of each data space in the box."""
  return per_dataspace(structure, dataspace_extents(structure, op_extents))
