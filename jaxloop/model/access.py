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

Relaxed inputs (issue #4).  The same functions take real-valued factors
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


def child_traffic(structure: Structure, m: Mapping, cum: Array,
                  relaxed: bool) -> Traffic:
  """Per level i, what its children fetch and what it serves them.

  Row i follows one child (an instance of level i-1; a compute unit for
  i = 0) through its tiles over the temporal loops of levels >= i (see the
  module docstring).  Loops are indexed by level and dim (loop (l, j)
  iterates dim j at level l; ``m.order`` gives their positions).
  Translations are carried as keys (one per data space, see
  :func:`tiling.translation_keys`): with ``ps`` the key of each loop's
  step, the translation before an increment of loop (l, j) in row i is
  ``ps[l, j] - sum_{active loops inside it, levels i..l} ps``.
  Storage-less levels carry no temporal loops (their factors must be 1), so
  rows that differ only by storage-less levels in between share their
  translations (computed once per first storage level).

  Link transfers (a child taking its delta from a mesh neighbour) need the
  delta to be the previous step's delta moved by one neighbour step.
  Transitions alternate between the innermost active loop ("1") and outer
  ones ("j"): a j-transition's delta is a slab like the previous
  1-transition's when ``t_j == t_1``, or a whole tile, which repeats the
  previous delta only when that was whole too (no overlap along ``t_1``).
  Of the 1-transitions, those after a slab-producing j (weight
  ``(n_1 - 1) * w_j``) qualify; all of them when tiles never overlap.
  Compute units (row 0) receive single points: every step qualifies.

  Not modelled: with X loops partly filling a mesh row and Y loops below
  it, Timeloop's row-major numbering (row length = the physical X fan-out)
  makes children of different logical rows neighbours; jaxloop then counts
  links as if rows did not wrap.  Edge children where an inner X loop wraps
  into the next X loop are likewise not matched.

  Args:
    m: mapping, batch-last (``[L, D, B]`` fields).
    cum: ``[L + 1, D, B]`` cumulative extents.
    relaxed: the mapping's factors are real (:func:`is_relaxed` before
      the conversion to float64).
  """
  L, D = m.temporal.shape[:2]
  f64 = jnp.float64
  # Data-space coordinates are exact in float32 (tensor ranks stay below
  # 2**24); products of extents and counts use float64.  Translations are
  # compared through their keys (:func:`tiling.translation_keys`).
  f32 = jnp.float32
  kdt = key_dtype(relaxed)
  # Loops are indexed by their dim (loop j of a level iterates dim j);
  # the permutation enters only through ``pos``, the loops' positions:
  # masked sums over the loops inside (or outside) a loop replace running
  # sums in loop order, and no loop's dim is looked up.
  pos = loop_positions(m.order, D)                                 # [L, D, B]
  bounds = m.temporal.astype(f64)                                  # [L, D, B]
  spatial = tiling.spatial_factors(m)
  step = (cum[:-1] * spatial).astype(kdt)                          # [L, D, B]
  ps = tiling.keys_per_dim(structure, step)        # [L,D,Y,B] key of each step
  is_active = is_multi(bounds)
  active = is_active.astype(f32)                                   # [L, D, B]
  aps = jnp.where(is_active[:, :, None], ps, 0)                    # [L,D,Y,B]
  levels = [l for l in range(L) if not structure.is_dummy[l]]
  mesh = {i: _mesh(structure, m, cum, i, relaxed) for i in range(L)
          if structure.fanout_x[i] * structure.fanout_y[i] > 1}
  fanout = jnp.prod(spatial, axis=1).astype(f64)                   # [L, B]

  # Per level: active steps of the loops inside each loop, and "no loop
  # inside is active"; ``below[l]``: active steps of all storage levels
  # under l.  Epoch weights (n - 1) * prod(outer bounds), outer = later in
  # the nest: the loops outside j at its level, then all levels above.
  # (Reductions over the loop axis: each is one kernel computed once,
  # where unrolled sums would be recomputed inside every consumer.)
  inside = pos[:, :, None] < pos[:, None, :]                       # [L,a,b,B]
  inside_active = inside & is_active[:, :, None]
  within = jnp.sum(jnp.where(inside_active[:, :, :, None],
                             aps[:, :, None], 0), axis=1, dtype=kdt)
  # the level's first (innermost) active loop: no active loop inside it
  first_in_level = is_active & ~jnp.any(inside_active, axis=1)     # [L, D, B]
  # bounds of the loops outside loop j (j inside them), multiplied
  outer = jnp.prod(jnp.where(inside, bounds[:, None], 1.0), axis=2)  # [L,D,B]
  inner, level_none, below, weight = {}, {}, {}, {}
  acc = jnp.zeros_like(aps[0, 0])
  above, weight_sum = jnp.ones_like(bounds[0, 0]), {}
  for l in reversed(levels):
    level_bound = jnp.prod(bounds[l], axis=0)                      # [B]
    # The weights of the loops from level l outwards telescope:
    # sum_j (n_j - 1) prod_{k > j} n_k = prod_j n_j - 1.
    weight_sum[l] = level_bound * above - 1.0
    weight[l] = (bounds[l] - 1.0) * outer[l] * above[None]         # [D, B]
    above = above * level_bound
  for l in levels:
    level_none[l] = jnp.prod(1.0 - active[l], axis=0)
    below[l] = acc
    # translation before loop j's increment, less the levels under l
    inner[l] = ps[l] - within[l] - acc[None]
    acc = acc + jnp.sum(aps[l], axis=0, dtype=kdt)

  # t_1 of the rows starting at level l: the step of the first active loop
  # at or above l (nothing active below it in the row), 0 if none, as rank
  # forms [X, B] and as keys [Y, B].  A sum over levels (not a select
  # chain) so that XLA computes it once rather than inside every consumer.
  first_step = jnp.stack([jnp.where(first_in_level[l], step[l], 0)
                          for l in levels])                        # [V,D,B]
  first_key = jnp.stack([
      functools.reduce(jnp.add, [
          jnp.where(first_in_level[l, k][None], ps[l, k], 0)
          for k in range(D)])
      for l in levels])                                            # [V,Y,B]
  t_first_from = {}
  for j, l in enumerate(levels):
    seen_none, pick = jnp.ones_like(active[0, 0]), []
    for lv in levels[j:]:
      pick.append(seen_none)
      seen_none = seen_none * level_none[lv]
    pick = jnp.stack(pick)[:, None] > 0
    t1 = jnp.sum(jnp.where(pick, first_step[j:], 0), axis=0, dtype=kdt)
    t_first_from[l] = (
        tiling.project(structure, t1.astype(f32)),                 # [X, B]
        jnp.sum(jnp.where(pick, first_key[j:], 0), axis=0, dtype=kdt))

  ext = tiling.dataspace_extents(structure, cum[:-1].astype(f64))  # [L,X,B]
  tile = tiling.per_dataspace(structure, ext)                      # [L,S,B]
  ext32 = ext.astype(f32)
  # Distinct deltas per fan-out: 1 at levels without a physical one (a
  # legal mapping has no spatial loops there).
  ones = jnp.ones_like(tile[0])
  groups = jnp.stack([mesh[i].groups.astype(f64) if i in mesh else ones
                      for i in range(L)])                          # [L,S,B]

  rows = {}

  def row(first_level):
    """Translation keys [N,Y,B], first-loop mask [N,B], weights, bounds
    [N,B], translation of the first active loop [X,B] and ``t == t_first``
    [N,S,B] of the rows starting at storage level ``first_level``."""
    if first_level not in rows:
      mine = [l for l in levels if l >= first_level]
      # The levels under first_level are not part of these rows.
      tp = (jnp.concatenate([inner[l] for l in mine])
            + below[first_level][None])
      seen_none = jnp.ones_like(active[0, 0])
      firsts = []
      for l in mine:
        firsts.append(first_in_level[l].astype(f32) * seen_none[None])
        seen_none = seen_none * level_none[l]
      first = jnp.concatenate(firsts)
      t_first, t_first_key = t_first_from[first_level]
      w = jnp.concatenate([weight[l] for l in mine])
      same = tiling.same_translation(structure, tp == t_first_key[None])
      rows[first_level] = (
          tp, first, w, jnp.concatenate([bounds[l] for l in mine]),
          t_first, same, weight_sum[first_level],
          tiling.sum_leading(w[:, None] * same))
    return rows[first_level]

  def linked(i, tp, first, w, n, t_first, same, w_same, overlap):
    """``(sum w_link (G_used - G) delta, sum w_link (unlinked - fan-out)
    delta)`` ``[S, B]``: what linked transitions change in what level i
    serves (distinct deltas G_used instead of G) and delivers (unlinked
    children instead of the whole fan-out)."""
    g_used, unlinked, used = _link(structure, mesh[i], tp, fanout[i])
    if i == 0:
      # Compute units keep nothing: each step is one access (a point).
      delta = jnp.ones_like(g_used)
      w_link = w[:, None] * used
    else:
      delta = tile[i][None] - same * overlap[None]                 # [N,S,B]
      # Which transitions' deltas repeat the previous one, translated.
      first64 = first.astype(f64)
      nonempty = tiling.per_dataspace(structure, t_first != 0,
                                      jnp.logical_or, False)       # [S, B]
      whole = (overlap == 0) & nonempty
      compatible = jnp.where(same, nonempty[None], whole[None])
      is_first = first[:, None] > 0
      n_first = jnp.sum(first64 * n, axis=0)
      w_first = jnp.sum(first64 * w, axis=0)
      # The first loop's translation is t_1 itself (``same`` holds there).
      after_slab = (n_first[None] - 1.0) * (w_same - w_first[None])
      # take maximum to avoid 0/0 when there is no active loop
      first_share = jnp.where(whole, 1.0,
                              after_slab / jnp.maximum(w_first[None], 1.0))
      w_link = w[:, None] * used * jnp.where(
          is_first, first_share[None], compatible.astype(f64))
    # One reduction for both: XLA would recompute w_link * delta in two.
    return jnp.sum(w_link[:, None] * delta[:, None] * jnp.stack(
        [g_used - groups[i][None], unlinked - fanout[i][None, None]],
        axis=1), axis=0)

  fetch, content, weighted, link = [], [], [], []
  for i in range(L):
    # Below a storage-less level without fan-out nothing of row i is used.
    prunable = (i > 0 and structure.is_dummy[i - 1]
                and structure.fanout_x[i] * structure.fanout_y[i] == 1)
    first_level = next((l for l in levels if l >= i), None)
    # Links need a physical fan-out below level i.
    has_mesh = structure.fanout_x[i] * structure.fanout_y[i] > 1
    if prunable or first_level is None:
      d, has_mesh = tile[i], False
    else:
      tp, first, w, n, t_first, same, w_all, w_same = row(first_level)
      overlap = None
      if i == 0:
        d = 1.0 + w_all[None] * jnp.ones_like(tile[i])
      else:
        # Where t_j == t_1 on a data space's ranks the overlap is t_1's.
        overlap = tiling.per_dataspace(
            structure, jnp.maximum(0.0, ext32[i] - jnp.abs(t_first))
            .astype(f64))                                          # [S, B]
        d = tile[i] * (1.0 + w_all[None]) - w_same * overlap
    fetch.append(d)
    if has_mesh:
      extra_g, extra_u = linked(i, tp, first, w, n, t_first, same, w_same,
                                overlap)
      content.append(groups[i] * d + extra_g)
      weighted.append(fanout[i][None] * d + extra_u)
      link.append(-extra_u)
    else:
      content.append(groups[i] * d)
      weighted.append(fanout[i][None] * d)
      link.append(jnp.zeros_like(d))
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
  L = m.temporal.shape[0]
  relaxed = is_relaxed(m)
  m = _as_float(m)
  cum = tiling.cumulative_extents(m)                               # [L+1,D,B]
  spatial = tiling.spatial_factors(m)
  traffic = child_traffic(structure, m, cum, relaxed)
  fetch, content = traffic.fetch, traffic.content                  # [L,S,B]
  fanout = jnp.prod(spatial, axis=1).astype(content.dtype)         # [L, B]
  size = tiling.box_size(structure, cum[1:])                       # [L,S,B]
  union = tiling.box_size(structure, cum[:-1] * spatial)           # [L,S,B]

  # Partition sizes: outermost = its tile; inward scaled by the share of the
  # parent's spatial union that one child covers (integer arithmetic).
  partition = [size[L - 1]]
  for i in range(L - 2, -1, -1):
    partition.append(floor_div(partition[-1] * size[i], union[i + 1]))
  partition = jnp.stack(partition[::-1])                           # [L,S,B]

  # A child's fills are its share of what its parent serves (ComputeParent
  # AccessShare: sum(accesses * multicast) / fan-out).
  share = traffic.weighted[1:] / fanout[1:, None]
  parent_share = jnp.concatenate([share, jnp.zeros_like(fetch[:1])])

  # Bypass: a skipped level's child-side accesses go to the level above,
  # multiplied by that level's own fan-out grouping.  Storage-less levels
  # keep nothing whatever the mapping says.
  dummy = np.asarray(structure.is_dummy)[:, None, None]
  soft = m.keep.dtype != jnp.bool_
  if soft:
    keep = m.keep.astype(content.dtype) * (1.0 - dummy)
  else:
    keep = m.keep & ~dummy
  # (MaskTiles scales the parent's accesses by what the skipped level was
  # asked for over what the parent delivered to it.)
  content_rows = [content[0]]
  for i in range(1, L):
    scale = fanout[i][None] / traffic.weighted[i]
    folded = select(keep[i - 1], content[i],
                    content[i] * content_rows[-1] * scale)
    content_rows.append(folded)
  content = jnp.stack(content_rows)

  if soft:
    # Soft "outermost keeping level": keep[i] * prod_{j > i} (1 - keep[j]).
    none_above = tiling.running(jnp.multiply, 1.0 - keep, reverse=True)
    none_above = jnp.concatenate([none_above[1:],
                                  jnp.ones_like(none_above[:1])])
    outermost = keep * none_above
    inner = 1.0 - outermost
  else:
    keep_i = keep.astype(content.dtype)
    kept_above = tiling.running(jnp.add, keep_i, exclusive=True,
                                reverse=True)
    outermost = keep & (kept_above == 0)
    inner = ~outermost
  parent_share = select(outermost, jnp.zeros_like(parent_share), parent_share)

  # instances[i] = prod_{l >= i} fan-out (in use)
  per_level = jnp.prod(spatial, axis=1)
  instances = tiling.running(jnp.multiply, per_level, reverse=True)  # [L,B]
  utilized = jnp.concatenate([instances[1:], jnp.ones_like(instances[:1])])

  # Link transfers at level i are read from and written into the children's
  # buffers (ComputePeerAccesses: divided by all of level i-1's instances).
  peer = traffic.link[1:] / (fanout[1:] * utilized[1:])[:, None]
  peer = jnp.concatenate([peer, jnp.zeros_like(content[:1])])

  # Timeloop rounds (std::round) reads, updates and read-write fills; the
  # ratios above are computed in floating point as there.
  rw = np.asarray(structure.read_write)[None, :, None]
  updates = jnp.where(rw, round_st(content), 0)
  reads = round_st(jnp.where(rw, content + peer - partition, content + peer))
  served = parent_share + peer
  if soft:
    fills = jnp.where(rw, round_st(served - inner * partition), served)
  else:
    fills = jnp.where(rw, round_st(jnp.where(inner, served - partition,
                                             served)), served)
  reductions = jnp.where(rw, reads, 0)

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
