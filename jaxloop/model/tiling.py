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
lists the distinct forms once, so extents and overlaps are computed per
form ``[..., X, B]`` and multiplied into data spaces by static index lists
(no padded ranks, no ``[S, R, D]`` contractions).  Translations, which the
model only tests for equality, are carried as one integer key per data
space (:func:`translation_keys`, ``[..., Y, B]``).
"""
from __future__ import annotations

import functools
import typing

import jax
import jax.numpy as jnp
import numpy as np

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


class Keys(typing.NamedTuple):
  """Exact integer keys of data-space translations (see :func:`keys`).

  Attributes:
    weights: ``[Y]`` tuples of ``D`` ints; key y of an op-space vector v is
      ``sum_d weights[y][d] * v[d]``.
    of_dataspace: ``[S]`` tuples of indices into ``weights``: the groups
      of each data space's rank forms (empty for a data space without
      ranks: its translations are all equal).
  """
  weights: tuple[tuple[int, ...], ...]
  of_dataspace: tuple[tuple[int, ...], ...]


_KEY_RANGE = 1 << 32   # int32 arithmetic wraps modulo 2**32


@functools.lru_cache(maxsize=256)
def translation_keys(structure: Structure) -> Keys:
  """Mixed-radix keys that test a data space's translations in one compare.

  The model asks, for many pairs of op-space translations a and b, whether
  they coincide on every rank of a data space (``a_r == b_r`` for all r).
  A translation of a legal mapping has ``|v_d| <= bound_d`` along every dim
  (a loop's step is at most its dim's bound, and the active steps inside
  it sum to at most the bound: each is at least twice the one before), so
  ``|a_r - b_r| <= M_r = 2 * sum_(d, c) |c| * bound_d``.  With radices
  ``R_r = 2 * M_r + 1`` and ``alpha_r = prod_(r' < r) R_r'``, the key
  ``k(v) = sum_r alpha_r * v_r`` is a balanced mixed-radix numeral:
  ``k(a) == k(b)`` iff ``a_r == b_r`` for every r, as long as
  ``prod_r R_r <= 2**32``, also modulo 2**32, which is int32 arithmetic.
  A data space's ranks are grouped greedily under that bound (one group
  for every tensor of ordinary size).  Keys are linear, so the key of a
  sum of steps is the sum of their keys, and the model computes with
  ``[.., Y, B]`` keys instead of ``[.., X, B]`` rank forms.

  (Illegal mappings, with factors beyond the bounds, may compare wrongly;
  they are flagged invalid and their counts are not used.)
  """
  ex = expressions(structure)
  D = structure.num_dims
  weights, of_ds = [], []

  def add(group):
    w = [0] * D
    alpha = 1
    for k in group:
      terms = ex.terms[k]
      for d, c in terms:
        w[d] += alpha * c
      alpha *= _radix(structure, terms)
    w = tuple(w)
    if w not in weights:
      weights.append(w)
    return weights.index(w)

  for idx in ex.of_dataspace:
    groups, group, size = [], [], 1
    for k in idx:
      radix = _radix(structure, ex.terms[k])
      if radix > _KEY_RANGE:
        raise ValueError(
            f"rank {ex.terms[k]} spans more than 2**31 values: problem "
            "bounds this large are not supported")
      if group and size * radix > _KEY_RANGE:
        groups.append(group)
        group, size = [], 1
      group.append(k)
      size *= radix
    if group:
      groups.append(group)
    of_ds.append(tuple(add(g) for g in groups))
  return Keys(tuple(weights), tuple(of_ds))


def _radix(structure: Structure, terms) -> int:
  """``2 * M_r + 1`` of a rank form (see :func:`translation_keys`)."""
  return 4 * sum(abs(c) * structure.dim_bounds[d] for d, c in terms) + 1


def keys(structure: Structure, op: Array) -> Array:
  """``[..., D, B]`` op-space vectors -> ``[..., Y, B]`` translation keys.

  Integer vectors give int32 keys (wrapping arithmetic, exact equality
  tests); real vectors (the relaxed model) give float64 keys, exact at
  integer points (every key is below 2**53) and equal elsewhere only on a
  set of measure zero.
  """
  out = []
  for w in translation_keys(structure).weights:
    v = None
    for d, c in enumerate(w):
      if c == 0:
        continue
      term = _scaled(op[..., d, :], c)
      v = term if v is None else v + term
    out.append(jnp.zeros_like(op[..., 0, :]) if v is None else v)
  if not out:
    return jnp.zeros(op.shape[:-2] + (0,) + op.shape[-1:], op.dtype)
  return jnp.stack(out, axis=-2)


def keys_per_dim(structure: Structure, op: Array) -> Array:
  """``[..., D, B]`` -> ``[..., D, Y, B]``: key of ``op[d]`` along dim d
  alone (the step of a loop over d), for every d."""
  weights = translation_keys(structure).weights
  zero = jnp.zeros_like(op[..., 0, :])
  return jnp.stack([
      jnp.stack([_scaled(op[..., d, :], w[d]) if w[d] else zero
                 for w in weights], axis=-2)
      for d in range(op.shape[-2])], axis=-3)


def _scaled(x: Array, c: int) -> Array:
  """``c * x`` for a key weight c: int32 wrapping for integer x."""
  if c == 1:
    return x
  if jnp.issubdtype(x.dtype, jnp.integer):
    return x * np.int32((c + (1 << 31)) % _KEY_RANGE - (1 << 31))
  return x * float(c)


def same_translation(structure: Structure, eq: Array) -> Array:
  """``bool[..., Y, B]`` key equalities -> ``bool[..., S, B]``: equal on
  every rank of each data space (all of its key groups)."""
  of_ds = translation_keys(structure).of_dataspace
  if of_ds == tuple((s,) for s in range(eq.shape[-2])):   # one key each
    return eq
  out = []
  for groups in of_ds:
    v = None
    for y in groups:
      v = eq[..., y, :] if v is None else v & eq[..., y, :]
    out.append(jnp.ones(eq.shape[:-2] + eq.shape[-1:], bool) if v is None
               else v)
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
