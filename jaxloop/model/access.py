"""Per-level access counts in closed form (Timeloop's nest analysis + tiling).

Timeloop (``nest-analysis.cpp``) walks the loop nest and, at every storage
boundary, counts the points of the child tile that are new relative to the
child's previous tile (exact box differences, ``MultiAAHR``).  Three rules of
the spring-2024 code shape the totals, and this module reproduces them in
closed form:

1. *Temporal extrapolation.*  Each loop above a boundary is run for
   iteration #0 and #1 only; #1's delta is weighted by ``n - 1``.  So the
   previous tile before an increment of loop j sits one step (not ``n - 1``
   steps) along every active loop inside j:
   ``t_j = step_j - sum_{active l < j} step_l``.
2. *Reset on stride change* (``SaveAndSubtractIfSameStride``).  A delta is
   taken only while the translation between consecutive tiles equals the
   last one; otherwise the whole tile is refetched.  Walking a binary
   counter, the translation before every increment of j >= 2 is ``t_1`` (of
   the innermost active loop), so increment j reuses data iff its projected
   translation equals ``t_1``'s.  Hence sliding-window halos are lost when a
   stationary loop iterates in between (the 2024 behaviour).
3. *Arithmetic operands are never reused* across iterations: the innermost
   storage level serves one access per data space per compute.

Per level i (child = level i-1's tile, or one operation for i = 0) and data
space s, the child fetches per instance

  D[i, s] = |A| + sum_j (n_j - 1) * prod_{l > j} n_l * delta_j,
  delta_j = |A| - prod_r max(0, e_r - |t_j,r|)   if t_j == t_1 (projected)
          = |A|                                   otherwise,

over the temporal loops j of levels >= i.  Spatial fan-out at level i groups
children whose deltas coincide (multicast for reads, spatial reduction for
updates): the level serves ``G[i, s]`` distinct deltas, G being the number of
distinct data-space translations among the children.

``tiling.cpp`` then turns these into reads/fills/updates (first-read elision
for read-write data, bypass by folding a skipped level's accesses into its
parent, the outermost keeping level having no fills).

Code map.  :func:`child_traffic` is the nest analysis: the loops
(:func:`_temporal_loops`), their epoch weights, translations and t_1
(:func:`_temporal_nest`), then per level one child's fetch D
(:func:`_row`, :func:`_child_fetch`), the multicast groups G
(:func:`_distinct`) and link transfers (:func:`_link_corrections`).
:func:`access_counts_last` applies ``tiling.cpp``: partition sizes,
parent access share, bypass folding, first-read elision and rounding.

Relaxed inputs.  The same functions take real-valued factors
(float64, e.g. ``exp`` of free log-parameters) and soft keep weights in
[0, 1] (float).  The mode is chosen from the dtypes at trace time
(:func:`is_relaxed`); on integer factors and bool keep the code is the exact
integer path, and on integer-valued float factors with 0/1 keep weights the
relaxed path gives the same numbers:

* "loop is active" (``bound > 1``) is ``bound > 1.5`` (same at integers);
* the gcd of multicast steps is computed on the rounded steps and treated
  as a constant (``stop_gradient``);
* floor divisions (partition sizes) are straight-through floors: the value
  is the floor, the gradient that of the real quotient;
* ``where(keep, a, b)`` becomes ``keep * a + (1 - keep) * b``;
* comparisons of translations stay discrete (piecewise constant).
"""
from __future__ import annotations

import dataclasses
import functools
import math
import typing

import jax
import jax.numpy as jnp
import numpy as np

from jaxloop.model import tiling
from jaxloop.structure import Structure
from jaxloop.types import Array, Mapping


class AccessCounts(typing.NamedTuple):
  """Per-instance counts, ``[L, S, B]`` each (bypassed entries are 0); one
  mapping's counts (:func:`access_counts`) drop the trailing B."""
  reads: Array
  fills: Array
  updates: Array
  temporal_reductions: Array
  utilized_capacity: Array
  utilized_instances: Array   # [L, B] instances of each level in use
  multicast_groups: Array     # [L, S, B] G: distinct deltas per fan-out
  link_transfers: Array       # [L, S, B] words level i's children pass over
                              # mesh links, per instance of level i


def is_relaxed(m: Mapping) -> bool:
  """True for real-valued factors (the relaxed model); static under jit."""
  return bool(jnp.issubdtype(jnp.asarray(m.temporal).dtype, jnp.floating))


def is_multi(bounds: Array) -> Array:
  """``bound > 1`` for integers, ``bound > 1.5`` for real factors (same at
  integer points; a relaxed bound below 1.5 rounds to a unit loop)."""
  return bounds > 1.5


def select(keep: Array, a: Array, b: Array) -> Array:
  """``where(keep, a, b)``; soft keep weights interpolate linearly.

  Identical to ``where`` for bool ``keep`` and for float ``keep`` in {0, 1}
  (with finite ``a``/``b``).
  """
  if keep.dtype == jnp.bool_:
    return jnp.where(keep, a, b)
  return keep * a + (1.0 - keep) * b


def floor_div(a: Array, b: Array) -> Array:
  """``a // b``; for real inputs a straight-through floor.

  Integers (positive, below 2**52): computed in float64 (the CPU has no
  vector integer division; an int64 ``//`` is a scalar loop costing tens of
  cycles per element) and corrected by one step either way, so the result
  is exact; returned as ``a``'s dtype.  Reals: the value is
  ``floor(a / b)`` (exact for integer-valued floats below 2**53); the
  gradient is the one of ``a / b`` (floor has zero gradient).
  """
  if jnp.issubdtype(a.dtype, jnp.integer) and jnp.issubdtype(
      b.dtype, jnp.integer):
    x, y = a.astype(jnp.float64), b.astype(jnp.float64)
    q = jnp.floor(x / y)
    q = q - (q * y > x) + ((q + 1.0) * y <= x)
    return q.astype(a.dtype)
  q = a / b
  return q + jax.lax.stop_gradient(jnp.floor(q) - q)


def round_st(x: Array) -> Array:
  """Round half away from zero (C's std::round); straight-through gradient."""
  r = jnp.sign(x) * jnp.floor(jnp.abs(x) + 0.5)
  if jnp.issubdtype(x.dtype, jnp.floating):
    return x + jax.lax.stop_gradient(r - x)
  return x


class Traffic(typing.NamedTuple):
  """What level i serves its children, per instance of level i, ``[L, S, B]``.

  Attributes:
    fetch: D, points one child receives over the run (its fill count when
      no link transfers happen).
    content: accesses level i serves: distinct deltas (multicast counted
      once), minus those children take from a mesh neighbour.
    weighted: deliveries to children, ``sum(accesses * multicast)``;
      ``weighted / fan-out`` is a child's share of the parent's accesses.
    link: words moved between neighbouring children (link transfers).
    groups: G, distinct deltas among all children of a fan-out.
  """
  fetch: Array
  content: Array
  weighted: Array
  link: Array
  groups: Array


class _Axis(typing.NamedTuple):
  """One mesh axis (X or Y) of a fan-out: its innermost spatial loop.

  Timeloop numbers a fan-out's children with the innermost spatial loop
  varying fastest; neighbours are +-1 along X and +-(X size) along Y.
  Spatial loops within one axis are taken in dim order (the mapping arrays
  carry no spatial permutation).
  """
  n: Array          # [B] factor of the innermost loop (1 if none)
  step: Array       # [Y, B] key of the translation between neighbours
  groups: Array     # [S, B] distinct deltas with that loop pinned
  ok: Array | None  # [B] neighbours are one step apart (Y: X fully used)


class _Mesh(typing.NamedTuple):
  """A level with a physical fan-out (``fanout_x * fanout_y > 1``).

  An axis whose physical fan-out is 1 is ``None`` (static): a legal mapping
  has no spatial loop there, so no neighbour along it.
  """
  groups: Array            # [S, B] distinct deltas among all children
  x: _Axis | None
  y: _Axis | None
  groups_xy: Array | None  # [S, B] both innermost loops pinned


def key_dtype(relaxed: bool):
  """Translation keys: wrapping int32 (exact), float64 for real factors."""
  return jnp.float64 if relaxed else jnp.int32


def loop_positions(order: Array, num_dims: int) -> Array:
  """``[L, K, B]`` permutations -> ``i32[L, J, B]`` position of dim j's loop.

  ``order[l, k]`` is the dim of the k-th loop of level l (innermost
  first); entries outside ``0..J-1`` (``-1``: a dropped dim, see
  :func:`jaxloop.model.unit_dims.restrict`) are loops that never iterate.
  Only the order of the positions matters.
  """
  order = order.astype(jnp.int32)
  dims = np.arange(num_dims, dtype=np.int32)[None, None, :, None]
  k = np.arange(order.shape[1], dtype=np.int32)[None, :, None, None]
  # A reduction (its own kernel, computed once) rather than an unrolled
  # sum, which XLA would recompute inside every consumer.
  return jnp.sum(jnp.where(order[:, :, None] == dims, k, 0), axis=1,
                 dtype=jnp.int32)


def _innermost(factors: Array) -> Array:
  """``[D, B]`` one-hot of the first dim (in dim order) with factor > 1."""
  multi = is_multi(factors)
  before = tiling.running(jnp.add, multi.astype(jnp.int32), exclusive=True)
  return (multi & (before == 0)).astype(factors.dtype)


def _mesh(structure: Structure, m: Mapping, cum: Array, i: int,
          relaxed: bool) -> _Mesh:
  """Neighbour structure of level i's fan-out (a mesh level)."""
  sx, sy = m.spatial_x[i], m.spatial_y[i]                          # [D, B]
  spatial = sx * sy
  unit = cum[i]                                                    # [D, B]
  fanout_x, fanout_y = structure.fanout_x[i], structure.fanout_y[i]
  g = lambda sp: _distinct(structure, sp, unit, relaxed)             # [S,B]
  x_used = jnp.prod(sx, axis=0)                                    # [B]
  if relaxed:
    y_ok = jnp.abs(x_used - fanout_x) < 0.5
    no_x = (x_used < 1.5) & (fanout_x > 1)
  else:
    y_ok = x_used == fanout_x
    no_x = (x_used == 1) & (fanout_x > 1)

  def axis(along, ok):
    inner = _innermost(along)
    n = 1 + jnp.sum(inner * (along - 1), axis=0)
    step = tiling.keys(structure, (inner * unit).astype(key_dtype(relaxed)))
    # Spatial factors with the innermost loop pinned to one index (a dim
    # uses one mesh axis, so pinning it leaves factor 1).
    pinned = jnp.where(inner > 0, 1, spatial)
    return _Axis(n, step, g(pinned), ok), inner

  x = y = gxy = None
  if fanout_x > 1:
    # With no X loops on a wider mesh, the Y loops' children sit along the
    # first row: linear neighbours +-1 are then steps of the innermost Y.
    x, inner_x = axis(jnp.where(no_x[None], sy, sx), None)
  if fanout_y > 1:
    along_y = sy if fanout_x == 1 else jnp.where(no_x[None], 1, sy)
    y, inner_y = axis(along_y, y_ok)
  if x is not None and y is not None:
    gxy = g(jnp.where((inner_x > 0) | (inner_y > 0), 1, spatial))
  return _Mesh(g(spatial), x, y, gxy)


def _link(structure: Structure, mesh: _Mesh, t: Array, fanout: Array):
  """Distinct deltas and unlinked children when translation t repeats.

  A child whose new delta equals what a mesh neighbour fetched in the
  previous step takes it over the link (ComputeNetworkLinkTransfers): the
  delta moved by ``t``, so X neighbours match when ``t = +-step_x``.  With
  ``t = step_x`` every child but the last X column matches; with
  ``t = step_x = 0`` all do.  Links are used when they cut accesses.

  Args:
    t: ``[N, Y, B]`` translation keys of N transitions.
    fanout: ``[B]`` children of one level-i instance.

  Returns:
    ``groups [N, S, B]`` distinct deltas still served, ``unlinked [N, S,
    B]`` children still served, ``used bool[N, S, B]``.
  """
  def match(a: _Axis):
    """(every child matches, all but an edge match) ``bool[N, S, B]``."""
    plus = tiling.same_translation(structure, t == a.step[None])
    minus = tiling.same_translation(structure, t == -a.step[None])
    valid = is_multi(a.n)[None, None]
    if a.ok is not None:
      valid = valid & a.ok[None, None]
    return valid & plus & minus, valid & (plus ^ minus)

  g = mesh.groups[None]
  matched = [(a, *match(a)) for a in (mesh.x, mesh.y) if a is not None]
  everyone = functools.reduce(jnp.logical_or, [m[1] for m in matched])
  if len(matched) == 2:
    (ax, _, one_x), (ay, _, one_y) = matched
    groups = jnp.where(one_x & one_y, mesh.groups_xy[None], jnp.where(
        one_x, ax.groups[None], jnp.where(one_y, ay.groups[None], g)))
  else:
    (a, _, one), = matched
    groups = jnp.where(one, a.groups[None], g)
  groups = jnp.where(everyone, 0, groups)
  per_axis = functools.reduce(jnp.multiply, [
      jnp.where(one, a.n[None, None], 1) for a, _, one in matched])
  any_one = functools.reduce(jnp.logical_or, [one for _, _, one in matched])
  fanout = fanout[None, None]
  unlinked = jnp.where(everyone, 0, fanout / per_axis)
  used = (everyone | any_one) & (groups < g)
  return (jnp.where(used, groups, g), jnp.where(used, unlinked, fanout),
          used)


class _Loops(typing.NamedTuple):
  """The temporal loops of every level, batch-last.

  Loop (l, j) iterates dim j at level l; the level's permutation enters
  only through ``pos`` (masked sums over the loops inside a loop replace
  running sums in loop order, so no loop's dim is looked up).
  """
  pos: Array        # i32[L, D, B] position of loop (l, j) in its level
  bounds: Array     # f64[L, D, B] temporal factors n
  spatial: Array    # [L, D, B] spatial factors (fan-out per dim)
  step: Array       # [L, D, B] op-space step: child extent times fan-out
  ps: Array         # [L, D, Y, B] translation key of each loop's step
  is_active: Array  # bool[L, D, B] the loop iterates (n > 1)
  active: Array     # f32[L, D, B] is_active as 0/1
  aps: Array        # [L, D, Y, B] ps of active loops, 0 for unit loops


def _temporal_loops(structure: Structure, m: Mapping, cum: Array,
                    relaxed: bool) -> _Loops:
  """Bounds, steps and step keys of every loop (l, j), ``[L, D, ...B]``.

  The step of loop (l, j) is the op-space extent of one spatial union of
  level l's children (``cum[l] * spatial[l]``); translations are carried
  as its keys (:func:`tiling.keys_per_dim`), ``key_dtype(relaxed)``.
  """
  D = m.temporal.shape[1]
  kdt = key_dtype(relaxed)
  pos = loop_positions(m.order, D)                                 # [L, D, B]
  bounds = m.temporal.astype(jnp.float64)                          # [L, D, B]
  spatial = tiling.spatial_factors(m)
  step = (cum[:-1] * spatial).astype(kdt)                          # [L, D, B]
  ps = tiling.keys_per_dim(structure, step)        # [L,D,Y,B] key of each step
  is_active = is_multi(bounds)
  active = is_active.astype(jnp.float32)                           # [L, D, B]
  aps = jnp.where(is_active[:, :, None], ps, 0)                    # [L,D,Y,B]
  return _Loops(pos, bounds, spatial, step, ps, is_active, active, aps)


class _Nesting(typing.NamedTuple):
  """How the loops of one level nest (outer = later in the nest)."""
  within: Array          # [L, D, Y, B] active step keys inside loop (l, j)
  first_in_level: Array  # bool[L, D, B] the level's innermost active loop
  outer: Array           # [L, D, B] product of the bounds outside (l, j)


def _nesting(loops: _Loops, kdt) -> _Nesting:
  """Loops inside / outside each loop of the same level, ``[L, D, ...B]``.

  Reductions over the loop axis (one kernel each, computed once, where
  unrolled sums would be recomputed inside every consumer).
  """
  inside = loops.pos[:, :, None] < loops.pos[:, None, :]           # [L,a,b,B]
  inside_active = inside & loops.is_active[:, :, None]
  within = jnp.sum(jnp.where(inside_active[:, :, :, None],
                             loops.aps[:, :, None], 0), axis=1, dtype=kdt)
  # the level's first (innermost) active loop: no active loop inside it
  first_in_level = loops.is_active & ~jnp.any(inside_active, axis=1)
  # bounds of the loops outside loop j (j inside them), multiplied
  outer = jnp.prod(jnp.where(inside, loops.bounds[:, None], 1.0), axis=2)
  return _Nesting(within, first_in_level, outer)


class _LevelTerms(typing.NamedTuple):
  """What the rows take from the temporal loops of one storage level l."""
  inner: Array        # [D, Y, B] translation key before loop (l, j)'s
                      # increment, less the active steps of levels under l
  below: Array        # [Y, B] active step keys of the storage levels under l
  none_active: Array  # f32[B] 1 where no loop of level l is active
  weight: Array       # [D, B] epoch weight (n - 1) * prod(outer bounds)
  weight_sum: Array   # [B] sum of the weights from level l outwards


def _level_terms(loops: _Loops, nesting: _Nesting, levels: list[int],
                 kdt) -> dict[int, _LevelTerms]:
  """Temporal extrapolation terms of each storage level (rule 1).

  Epoch weights ``(n_j - 1) * prod(bounds outside j)``, outside being the
  loops after j at its level, then all levels above; from level l
  outwards they telescope to ``prod n - 1``.  The translation before an
  increment of loop (l, j) is its step less the active steps inside it:
  those of level l (``within``) and of every storage level under l.
  """
  acc = jnp.zeros_like(loops.aps[0, 0])
  above, weight_sum, weight = jnp.ones_like(loops.bounds[0, 0]), {}, {}
  for l in reversed(levels):
    level_bound = jnp.prod(loops.bounds[l], axis=0)                # [B]
    weight_sum[l] = level_bound * above - 1.0
    weight[l] = (loops.bounds[l] - 1.0) * nesting.outer[l] * above[None]
    above = above * level_bound
  terms = {}
  for l in levels:
    none_active = jnp.prod(1.0 - loops.active[l], axis=0)
    below = acc
    inner = loops.ps[l] - nesting.within[l] - acc[None]
    acc = acc + jnp.sum(loops.aps[l], axis=0, dtype=kdt)
    terms[l] = _LevelTerms(inner, below, none_active, weight[l],
                           weight_sum[l])
  return terms


class _FirstStep(typing.NamedTuple):
  """t_1 of the rows starting at one storage level: the step of the first
  active loop at or above it (0 if none)."""
  ranks: Array  # f32[X, B] as rank forms
  key: Array    # [Y, B] as translation keys


def _first_steps(structure: Structure, loops: _Loops, nesting: _Nesting,
                 terms: dict[int, _LevelTerms], levels: list[int],
                 kdt) -> dict[int, _FirstStep]:
  """t_1 (rule 2's reference translation) of the rows from each level.

  Nothing active lies below the first active loop in the row, so t_1 is
  that loop's whole step.  A sum over levels (not a select chain), so that
  XLA computes it once rather than inside every consumer.
  """
  first_in_level, D = nesting.first_in_level, loops.bounds.shape[1]
  first_step = jnp.stack([jnp.where(first_in_level[l], loops.step[l], 0)
                          for l in levels])                        # [V,D,B]
  first_key = jnp.stack([
      functools.reduce(jnp.add, [
          jnp.where(first_in_level[l, k][None], loops.ps[l, k], 0)
          for k in range(D)])
      for l in levels])                                            # [V,Y,B]
  firsts = {}
  for j, l in enumerate(levels):
    seen_none, pick = jnp.ones_like(loops.active[0, 0]), []
    for lv in levels[j:]:
      pick.append(seen_none)
      seen_none = seen_none * terms[lv].none_active
    pick = jnp.stack(pick)[:, None] > 0
    t1 = jnp.sum(jnp.where(pick, first_step[j:], 0), axis=0, dtype=kdt)
    firsts[l] = _FirstStep(
        tiling.project(structure, t1.astype(jnp.float32)),         # [X, B]
        jnp.sum(jnp.where(pick, first_key[j:], 0), axis=0, dtype=kdt))
  return firsts


class _Nest(typing.NamedTuple):
  """The temporal nest as the rows see it (see :func:`child_traffic`)."""
  levels: list[int]               # storage levels, innermost first
  loops: _Loops
  first_in_level: Array           # bool[L, D, B]
  terms: dict[int, _LevelTerms]   # per storage level
  firsts: dict[int, _FirstStep]   # t_1 of the rows from each storage level


def _temporal_nest(structure: Structure, loops: _Loops,
                   relaxed: bool) -> _Nest:
  """Everything the rows of :func:`child_traffic` need from the loops."""
  kdt = key_dtype(relaxed)
  levels = [l for l in range(loops.bounds.shape[0])
            if not structure.is_dummy[l]]
  nesting = _nesting(loops, kdt)
  terms = _level_terms(loops, nesting, levels, kdt)
  firsts = _first_steps(structure, loops, nesting, terms, levels, kdt)
  return _Nest(levels, loops, nesting.first_in_level, terms, firsts)


class _Row(typing.NamedTuple):
  """The transitions of the rows starting at one storage level.

  N = D * (storage levels at or above it): one transition per loop, the
  increment of that loop.
  """
  t: Array            # [N, Y, B] translation key before each increment
  first: Array        # f32[N, B] 1 at the row's first active loop (t_1)
  weight: Array       # [N, B] epoch weights
  bounds: Array       # [N, B] loop bounds n
  t_first: Array      # f32[X, B] t_1 as rank forms
  same: Array         # bool[N, S, B] t == t_1 on the data space's ranks
  weight_all: Array   # [B] sum of the weights
  weight_same: Array  # [S, B] sum of the weights where t == t_1


def _row(structure: Structure, nest: _Nest, first_level: int) -> _Row:
  """Translations, weights and ``t == t_1`` of the rows from a level.

  With ``ps`` the key of each loop's step, the translation before an
  increment of loop (l, j) in row i is ``ps[l, j] - sum ps`` over the
  active loops inside it at levels i..l (rule 1).  Storage-less levels
  carry no temporal loops, so rows that differ only by storage-less
  levels in between share these (computed once per first storage level).
  """
  loops, terms = nest.loops, nest.terms
  mine = [l for l in nest.levels if l >= first_level]
  tp = (jnp.concatenate([terms[l].inner for l in mine])
        + terms[first_level].below[None])
  seen_none = jnp.ones_like(loops.active[0, 0])
  firsts = []
  for l in mine:
    firsts.append(nest.first_in_level[l].astype(jnp.float32)
                  * seen_none[None])
    seen_none = seen_none * terms[l].none_active
  first = jnp.concatenate(firsts)
  t_first, t_first_key = nest.firsts[first_level]
  w = jnp.concatenate([terms[l].weight for l in mine])
  same = tiling.same_translation(structure, tp == t_first_key[None])
  return _Row(tp, first, w, jnp.concatenate([loops.bounds[l] for l in mine]),
              t_first, same, terms[first_level].weight_sum,
              tiling.sum_leading(w[:, None] * same))


def _child_fetch(structure: Structure, i: int, row: _Row, tile: Array,
                 ext32: Array) -> tuple[Array, Array | None]:
  """``(D [S, B], overlap [S, B])``: what one child of level i fetches.

  ``D = |A| * (1 + sum w) - sum_{t == t_1} w * overlap``, the overlap of
  consecutive tiles along t_1 (rule 2); compute units (i = 0) fetch one
  point per step and keep nothing (rule 3; overlap ``None``).

  Args:
    tile: ``[L, S, B]`` child tile sizes |A|; ``ext32``: ``[L, X, B]``
      their rank extents.
  """
  overlap = None
  if i == 0:
    d = 1.0 + row.weight_all[None] * jnp.ones_like(tile[i])
  else:
    # Where t_j == t_1 on a data space's ranks the overlap is t_1's.
    overlap = tiling.per_dataspace(
        structure, jnp.maximum(0.0, ext32[i] - jnp.abs(row.t_first))
        .astype(jnp.float64))                                      # [S, B]
    d = tile[i] * (1.0 + row.weight_all[None]) - row.weight_same * overlap
  return d, overlap


def _linked_weights(structure: Structure, row: _Row, used: Array,
                    overlap: Array) -> Array:
  """``[N, S, B]`` weights of the transitions whose delta a child can take
  from a mesh neighbour (level i > 0).

  Transitions alternate between the innermost active loop ("1") and outer
  ones ("j"): a j-transition's delta is a slab like the previous
  1-transition's when ``t_j == t_1``, or a whole tile, which repeats the
  previous delta only when that was whole too (no overlap along ``t_1``).
  Of the 1-transitions, those after a slab-producing j (weight
  ``(n_1 - 1) * w_j``) qualify; all of them when tiles never overlap.

  Args:
    used: ``bool[N, S, B]`` links cut the accesses of that transition.
    overlap: ``[S, B]`` overlap of consecutive tiles along t_1.
  """
  first, w, same = row.first, row.weight, row.same
  first64 = first.astype(jnp.float64)
  nonempty = tiling.per_dataspace(structure, row.t_first != 0,
                                  jnp.logical_or, False)           # [S, B]
  whole = (overlap == 0) & nonempty
  compatible = jnp.where(same, nonempty[None], whole[None])
  is_first = first[:, None] > 0
  n_first = jnp.sum(first64 * row.bounds, axis=0)
  w_first = jnp.sum(first64 * w, axis=0)
  # The first loop's translation is t_1 itself (``same`` holds there).
  after_slab = (n_first[None] - 1.0) * (row.weight_same - w_first[None])
  # take maximum to avoid 0/0 when there is no active loop
  first_share = jnp.where(whole, 1.0,
                          after_slab / jnp.maximum(w_first[None], 1.0))
  return w[:, None] * used * jnp.where(
      is_first, first_share[None], compatible.astype(jnp.float64))


def _link_corrections(structure: Structure, i: int, mesh: _Mesh,
                      fanout: Array, groups: Array, tile: Array, row: _Row,
                      overlap: Array | None) -> Array:
  """``[2, S, B]``: what link transfers change at level i's fan-out.

  ``[0]``: ``sum w_link (G_used - G) delta``, the change in what level i
  serves (distinct deltas still served instead of G); ``[1]``: ``sum
  w_link (unlinked - fan-out) delta``, the change in deliveries (children
  still served instead of the whole fan-out).  Compute units (i = 0)
  receive single points, so every step qualifies.

  Not modelled: with X loops partly filling a mesh row and Y loops below
  it, Timeloop's row-major numbering (row length = the physical X fan-out)
  makes children of different logical rows neighbours; jaxloop then counts
  links as if rows did not wrap.  Edge children where an inner X loop wraps
  into the next X loop are likewise not matched.

  Args:
    fanout: ``[L, B]``; groups, tile: ``[L, S, B]``.
  """
  g_used, unlinked, used = _link(structure, mesh, row.t, fanout[i])
  if i == 0:
    # Compute units keep nothing: each step is one access (a point).
    delta = jnp.ones_like(g_used)
    w_link = row.weight[:, None] * used
  else:
    delta = tile[i][None] - row.same * overlap[None]               # [N,S,B]
    w_link = _linked_weights(structure, row, used, overlap)
  # One reduction for both: XLA would recompute w_link * delta in two.
  return jnp.sum(w_link[:, None] * delta[:, None] * jnp.stack(
      [g_used - groups[i][None], unlinked - fanout[i][None, None]],
      axis=1), axis=0)


def _served(i: int, d: Array, groups: Array, fanout: Array,
            extra: Array | None) -> tuple[Array, Array, Array]:
  """``(content, weighted, link)`` ``[S, B]`` of level i from one child's
  fetch ``d``: G distinct deltas served (multicast), ``fan-out * d``
  deliveries, plus the link corrections ``extra`` (``None``: no mesh)."""
  if extra is None:
    return groups[i] * d, fanout[i][None] * d, jnp.zeros_like(d)
  extra_g, extra_u = extra
  return groups[i] * d + extra_g, fanout[i][None] * d + extra_u, -extra_u


def _multicast_groups(mesh: dict[int, _Mesh], tile: Array) -> Array:
  """``[L, S, B]`` G per level: distinct deltas among a fan-out's children
  (1 at levels without a physical fan-out: a legal mapping has no spatial
  loops there)."""
  ones = jnp.ones_like(tile[0])
  return jnp.stack([mesh[i].groups.astype(jnp.float64) if i in mesh
                    else ones for i in range(tile.shape[0])])


def child_traffic(structure: Structure, m: Mapping, cum: Array,
                  relaxed: bool) -> Traffic:
  """Per level i, what its children fetch and what it serves them.

  Row i follows one child (an instance of level i-1; a compute unit for
  i = 0) through its tiles over the temporal loops of levels >= i (see the
  module docstring); loop (l, j) iterates dim j at level l.  Translations
  are compared through their keys (:func:`tiling.translation_keys`); data-
  space coordinates are exact in float32 (tensor ranks stay below 2**24),
  products of extents and counts use float64.  Link transfers (a child
  taking its delta from a mesh neighbour) then correct what the level
  serves (:func:`_link_corrections`).

  Args:
    m: mapping, batch-last (``[L, D, B]`` fields).
    cum: ``[L + 1, D, B]`` cumulative extents.
    relaxed: the mapping's factors are real (:func:`is_relaxed` before
      the conversion to float64).

  Returns:
    ``Traffic`` with ``[L, S, B]`` fields.
  """
  L = m.temporal.shape[0]
  loops = _temporal_loops(structure, m, cum, relaxed)
  mesh = {i: _mesh(structure, m, cum, i, relaxed) for i in range(L)
          if structure.fanout_x[i] * structure.fanout_y[i] > 1}
  fanout = jnp.prod(loops.spatial, axis=1).astype(jnp.float64)     # [L, B]
  nest = _temporal_nest(structure, loops, relaxed)
  ext = tiling.dataspace_extents(
      structure, cum[:-1].astype(jnp.float64))                     # [L,X,B]
  tile = tiling.per_dataspace(structure, ext)                      # [L,S,B]
  ext32 = ext.astype(jnp.float32)
  groups = _multicast_groups(mesh, tile)                           # [L,S,B]
  rows, fetch, served = {}, [], []
  for i in range(L):
    first_level = next((l for l in nest.levels if l >= i), None)
    # Below a storage-less level without fan-out nothing of row i is used.
    prunable = (i > 0 and structure.is_dummy[i - 1] and i not in mesh)
    extra = None
    if prunable or first_level is None:
      d = tile[i]
    else:
      if first_level not in rows:
        rows[first_level] = _row(structure, nest, first_level)
      d, overlap = _child_fetch(structure, i, rows[first_level], tile, ext32)
      if i in mesh:   # links need a physical fan-out below level i
        extra = _link_corrections(structure, i, mesh[i], fanout, groups,
                                  tile, rows[first_level], overlap)
    fetch.append(d)
    served.append(_served(i, d, groups, fanout, extra))
  content, weighted, link = zip(*served)
  return Traffic(*(jnp.stack(x) for x in (fetch, content, weighted, link)),
                 groups=groups)


def _gcd_of_steps(a: Array, b: Array, bound_gcd: int) -> Array:
  """``gcd(a, b)`` of two rank steps ``c1 * E1`` and ``c2 * E2``, float64.

  The extents E divide their dims' bounds in every legal mapping, so the
  gcd divides ``bound_gcd = gcd(c1 * bound1, c2 * bound2)``: it is the
  largest divisor of that static number dividing both steps (no integer
  division at run time; most convs have ``bound_gcd`` 1).  Real steps are
  rounded and the result held constant (``stop_gradient``).
  """
  a = jnp.round(jax.lax.stop_gradient(a).astype(jnp.float64))
  b = jnp.round(jax.lax.stop_gradient(b).astype(jnp.float64))
  g = jnp.ones_like(a)
  small = [d for d in range(2, math.isqrt(bound_gcd) + 1) if bound_gcd % d == 0]
  divisors = sorted(set(small + [bound_gcd // d for d in small]
                        + ([bound_gcd] if bound_gcd > 1 else [])))
  for d in divisors:
    divides = ((jnp.round(a * (1.0 / d)) * d == a)
                 & (jnp.round(b * (1.0 / d)) * d == b))
    g = jnp.where(divides, float(d), g)
  return g


def _distinct(structure: Structure, spatial: Array, unit: Array,
              relaxed: bool) -> Array:
  """``[S, B]`` G: distinct data-space translations among the children of
  a fan-out ``spatial [D, B]`` over child tiles of op-space extents
  ``unit [D, B]``.

  Children of a spatial fan-out whose deltas are equal are served once
  (Timeloop's ComputeAccurateMulticastedAccesses).  Child k is translated by
  ``sum_d P[s, r, d] * unit[d] * k_d``; ranks are independent (one rank per
  dim), so G is the product over ranks of the number of distinct values.  A
  rank with two dims (coefficient steps a, b and fan-outs n, m) has
  ``n*m - max(0, n - b/g) * max(0, m - a/g)`` distinct values, g = gcd(a, b).
  Passing spatial factors with some loops pinned to 1 counts the distinct
  deltas of a sub-grid of children.

  Relaxed (real) factors: g is the gcd of the rounded steps among the
  divisors of the bounds' gcd, held constant (``stop_gradient``); at
  integer points this is the exact gcd.
  """
  per_form = []
  for terms in tiling.expressions(structure).terms:
    if len(terms) == 1:
      (d, _), = terms
      per_form.append(spatial[d])
      continue
    (d1, c1), (d2, c2) = terms
    n, k = spatial[d1], spatial[d2]
    a, b = c1 * unit[d1], c2 * unit[d2]
    g = _gcd_of_steps(a, b, math.gcd(c1 * structure.dim_bounds[d1],
                                     c2 * structure.dim_bounds[d2]))
    if relaxed:
      overlap = (jnp.maximum(0.0, n - b / g) * jnp.maximum(0.0, k - a / g))
    else:
      a, b = a.astype(jnp.float64), b.astype(jnp.float64)
      overlap = (jnp.maximum(0, n - (b / g).astype(n.dtype))
                 * jnp.maximum(0, k - (a / g).astype(n.dtype)))
    per_form.append(n * k - overlap)
  if not per_form:
    return jnp.ones((structure.num_dataspaces,) + spatial.shape[1:],
                    spatial.dtype)
  return tiling.per_dataspace(structure, jnp.stack(per_form))


def _as_float(m):
  """Integer factors as float64 for the counts.

  Every count is a product, sum or floor of integers far below 2**53, so
  float64 holds them exactly, and float multiplies, compares and selects
  vectorize better than int64 ones on CPU.  Real-valued factors compute
  the same values as integer ones at integer points (see the
  module docstring); keep/bypass stays as given (bool keeps
  the hard bypass rule).
  """
  f64 = jnp.float64
  return dataclasses.replace(m, temporal=m.temporal.astype(f64),
                             spatial_x=m.spatial_x.astype(f64),
                             spatial_y=m.spatial_y.astype(f64))


def _partition_sizes(size: Array, union: Array) -> Array:
  """``[L, S, B]`` partition sizes (ComputePartitionSizes).

  The outermost level's partition is its tile; inward, each is scaled by
  the share of the parent's spatial union that one child covers (integer
  arithmetic: floor division).

  Args:
    size: ``[L, S, B]`` tile sizes; union: ``[L, S, B]`` size of the
      spatial union of each level's children.
  """
  L = size.shape[0]
  partition = [size[L - 1]]
  for i in range(L - 2, -1, -1):
    partition.append(floor_div(partition[-1] * size[i], union[i + 1]))
  return jnp.stack(partition[::-1])


def _parent_share(traffic: Traffic, fanout: Array) -> Array:
  """``[L, S, B]`` a child's share of what its parent serves
  (ComputeParentAccessShare: ``sum(accesses * multicast) / fan-out``);
  0 at the outermost level.  ``fanout``: ``[L, B]``."""
  share = traffic.weighted[1:] / fanout[1:, None]
  return jnp.concatenate([share, jnp.zeros_like(traffic.fetch[:1])])


def _effective_keep(structure: Structure, keep: Array, dtype) -> Array:
  """``[L, S, B]`` keep flags (bool) or soft weights (``dtype``):
  storage-less levels keep nothing whatever the mapping says."""
  dummy = np.asarray(structure.is_dummy)[:, None, None]
  if keep.dtype != jnp.bool_:
    return keep.astype(dtype) * (1.0 - dummy)
  return keep & ~dummy


def _fold_bypassed(content: Array, keep: Array, fanout: Array,
                   weighted: Array) -> Array:
  """``[L, S, B]`` accesses after bypass folding (MaskTiles).

  A skipped level's child-side accesses go to the level above, multiplied
  by that level's own fan-out grouping: the parent's accesses are scaled
  by what the skipped level was asked for over what the parent delivered
  to it.

  Args:
    content: ``[L, S, B]`` accesses each level serves if it keeps.
    keep: ``[L, S, B]`` (:func:`_effective_keep`); fanout: ``[L, B]``;
      weighted: ``[L, S, B]`` deliveries to children (:class:`Traffic`).
  """
  rows = [content[0]]
  for i in range(1, content.shape[0]):
    scale = fanout[i][None] / weighted[i]
    rows.append(select(keep[i - 1], content[i], content[i] * rows[-1] * scale))
  return jnp.stack(rows)


def _outermost_keeping(keep: Array) -> tuple[Array, Array]:
  """``(outermost, inner)`` ``[L, S, B]``: the outermost level keeping a
  data space (it has no fills) and the others.

  Soft keep weights: ``outermost = keep[i] * prod_{j > i} (1 - keep[j])``
  and ``inner = 1 - outermost``.
  """
  if keep.dtype != jnp.bool_:
    none_above = tiling.running(jnp.multiply, 1.0 - keep, reverse=True)
    none_above = jnp.concatenate([none_above[1:],
                                  jnp.ones_like(none_above[:1])])
    outermost = keep * none_above
    return outermost, 1.0 - outermost
  keep_i = keep.astype(jnp.float64)
  kept_above = tiling.running(jnp.add, keep_i, exclusive=True, reverse=True)
  outermost = keep & (kept_above == 0)
  return outermost, ~outermost


def _utilized_instances(spatial: Array) -> Array:
  """``[L, B]`` instances of each level in use: the product of the
  fan-outs in use above it, ``prod_{l > i} prod_d spatial[l, d]``.
  ``spatial``: ``[L, D, B]``."""
  per_level = jnp.prod(spatial, axis=1)
  instances = tiling.running(jnp.multiply, per_level, reverse=True)  # [L,B]
  return jnp.concatenate([instances[1:], jnp.ones_like(instances[:1])])


def _peer_accesses(link: Array, fanout: Array, utilized: Array) -> Array:
  """``[L, S, B]`` per-instance accesses from link transfers.

  Link transfers at level i are read from and written into the children's
  buffers (ComputePeerAccesses: divided by all of level i-1's instances);
  0 at the outermost level.  ``link``: ``[L, S, B]``; ``fanout``,
  ``utilized``: ``[L, B]``.
  """
  peer = link[1:] / (fanout[1:] * utilized[1:])[:, None]
  return jnp.concatenate([peer, jnp.zeros_like(link[:1])])


def _reads_fills_updates(structure: Structure, content: Array, peer: Array,
                         partition: Array, parent_share: Array,
                         inner: Array) -> tuple[Array, Array, Array, Array]:
  """``(reads, fills, updates, temporal reductions)`` ``[L, S, B]``
  (ComputeReadUpdateReductionAccesses_Legacy).

  Read-write data spaces: the accesses served are updates; reads (and,
  below the outermost keeping level, fills) elide the first read of each
  partition element (first-read elision); reads of read-write data are
  temporal reductions.  Timeloop rounds (std::round) reads, updates and
  read-write fills; the ratios are computed in floating point as there.

  Args:
    content: accesses served after bypass folding; peer: link accesses;
    partition: partition sizes; parent_share: a child's share of its
      parent's accesses (0 at the outermost keeping level); inner: not the
      outermost keeping level (bool, or a soft weight).
  """
  rw = np.asarray(structure.read_write)[None, :, None]
  updates = jnp.where(rw, round_st(content), 0)
  reads = round_st(jnp.where(rw, content + peer - partition, content + peer))
  served = parent_share + peer
  if inner.dtype != jnp.bool_:
    fills = jnp.where(rw, round_st(served - inner * partition), served)
  else:
    fills = jnp.where(rw, round_st(jnp.where(inner, served - partition,
                                             served)), served)
  reductions = jnp.where(rw, reads, 0)
  return reads, fills, updates, reductions


def access_counts_last(structure: Structure, m: Mapping) -> AccessCounts:
  """Per-instance reads/fills/updates of every level and data space.

  Mirrors ``tiling.cpp``: CollapseDataMovementNest, ComputePartitionSizes,
  ComputeParentAccessShare, MaskTiles, ProcessOuterMaskedLevels and
  ComputeReadUpdateReductionAccesses_Legacy with first-read elision.

  Args:
    m: mappings, batch-last (``[L, D, B]`` / ``[L, S, B]`` fields).

  Returns:
    ``AccessCounts`` with ``[L, S, B]`` fields (``[L, B]`` instances).
  """
  relaxed = is_relaxed(m)
  m = _as_float(m)
  cum = tiling.cumulative_extents(m)                               # [L+1,D,B]
  spatial = tiling.spatial_factors(m)
  traffic = child_traffic(structure, m, cum, relaxed)
  fanout = jnp.prod(spatial, axis=1).astype(traffic.content.dtype)  # [L, B]
  size = tiling.box_size(structure, cum[1:])                       # [L,S,B]
  union = tiling.box_size(structure, cum[:-1] * spatial)           # [L,S,B]
  partition = _partition_sizes(size, union)                        # [L,S,B]
  parent_share = _parent_share(traffic, fanout)
  keep = _effective_keep(structure, m.keep, traffic.content.dtype)
  content = _fold_bypassed(traffic.content, keep, fanout, traffic.weighted)
  outermost, inner = _outermost_keeping(keep)
  parent_share = select(outermost, jnp.zeros_like(parent_share), parent_share)
  utilized = _utilized_instances(spatial)                          # [L, B]
  peer = _peer_accesses(traffic.link, fanout, utilized)
  reads, fills, updates, reductions = _reads_fills_updates(
      structure, content, peer, partition, parent_share, inner)
  zero = jnp.zeros_like(content)
  kept = lambda x: select(keep, x, zero)
  return AccessCounts(
      reads=kept(reads), fills=kept(fills), updates=kept(updates),
      temporal_reductions=kept(reductions),
      utilized_capacity=kept(size), utilized_instances=utilized,
      multicast_groups=traffic.groups, link_transfers=traffic.link)


def access_counts(structure: Structure, m: Mapping) -> AccessCounts:
  """:func:`access_counts_last` of one mapping (``[L, D]`` fields)."""
  out = access_counts_last(structure, batch_last(m))
  return jax.tree.map(lambda x: x[..., 0], out)


def batch_last(tree):
  """Add a trailing batch axis of size 1 to every leaf."""
  return jax.tree.map(lambda x: jnp.asarray(x)[..., None], tree)
