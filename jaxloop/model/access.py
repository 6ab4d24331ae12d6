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
"""
from __future__ import annotations

import typing

import jax.numpy as jnp
import numpy as np

from jaxloop.model import tiling
from jaxloop.structure import Structure
from jaxloop.types import Array, Mapping


class AccessCounts(typing.NamedTuple):
  """Per-instance counts, ``[L, S]`` each (bypassed entries are 0)."""
  reads: Array
  fills: Array
  updates: Array
  temporal_reductions: Array
  utilized_capacity: Array
  utilized_instances: Array   # [L] instances of each level in use
  multicast_groups: Array     # [L, S] G: distinct deltas served per fan-out


def _prefix(xs, init, op):
  """Exclusive running ``op`` over a list (unrolled; sizes are static)."""
  out, acc = [], init
  for x in xs:
    out.append(acc)
    acc = op(acc, x)
  return out, acc


def child_fetches(structure: Structure, m: Mapping, cum: Array) -> Array:
  """``[L, S]`` D: words each child instance fetches from level i's side.

  Row i counts, per instance of level i-1 (per compute unit for i = 0), the
  data-space points entering it over the whole run: Timeloop's per-child
  accesses accumulated at the innermost loop of level i.

  Translations are built in data space directly: with ``ps`` the projected
  step of each loop, the translation before an increment of loop (l, k) in
  row i is ``ps[l, k] - sum_{active inner loops in levels i..l} ps``.
  Storage-less levels carry no temporal loops (their factors must be 1).
  """
  L, D = m.temporal.shape
  f64 = jnp.float64
  # Data-space coordinates and translations are exact in float32 (tensor
  # ranks stay below 2**24); products of extents and counts use float64.
  f32 = jnp.float32
  proj = np.asarray(structure.projection_array(), np.float32)     # [S, R, D]
  order = m.order.astype(jnp.int32)                               # [L, K]
  bounds = jnp.take_along_axis(m.temporal.astype(f64), order, axis=1)
  step = (cum[:-1] * tiling.spatial_factors(m)).astype(f64)       # [L, D]
  # Projected step of each loop: its extent times its dim's coefficients.
  ps = (jnp.take_along_axis(step.astype(f32), order, axis=1)[:, :, None, None]
        * jnp.take(jnp.asarray(proj.transpose(2, 0, 1)), order, axis=0))
  active = (bounds > 1).astype(f32)                               # [L, K]
  aps = active[:, :, None, None] * ps
  levels = [l for l in range(L) if not structure.is_dummy[l]]

  # Per level: exclusive prefix of active steps and of "nothing active yet".
  within, level_total, none_before, level_none = {}, {}, {}, {}
  for l in levels:
    pre, tot = _prefix([aps[l, k] for k in range(D)],
                       jnp.zeros_like(aps[l, 0]), jnp.add)
    nb, nall = _prefix([1.0 - active[l, k] for k in range(D)],
                       jnp.ones((), f32), jnp.multiply)
    within[l], level_total[l] = jnp.stack(pre), tot
    none_before[l], level_none[l] = jnp.stack(nb), nall

  # Epoch weights (n - 1) * prod(outer bounds), outer = later in the nest.
  flat = [bounds[l, k] for l in levels for k in range(D)]
  suffix, _ = _prefix(flat[::-1], jnp.ones((), f64), jnp.multiply)
  weight_flat = [(n - 1.0) * s for n, s in zip(flat, suffix[::-1])]
  weight = {l: jnp.stack(weight_flat[j * D:(j + 1) * D])
            for j, l in enumerate(levels)}

  ext = tiling.dataspace_extents(structure, cum[:-1].astype(f64))  # [L,S,R]
  tile = jnp.prod(ext, axis=-1)                                   # [L, S]
  ext32 = ext.astype(f32)

  def row(i):
    """Translations [N, S, R], first active step [S, R], weights [N]."""
    shift = jnp.zeros_like(level_total[levels[0]])
    seen_none = jnp.ones((), f32)
    tps, firsts, weights = [], [], []
    for l in (l for l in levels if l >= i):
      tps.append(ps[l] - within[l] - shift[None])
      firsts.append(active[l] * none_before[l] * seen_none)
      weights.append(weight[l])
      shift = shift + level_total[l]
      seen_none = seen_none * level_none[l]
    if not tps:
      return None
    tp = jnp.concatenate(tps)
    first = jnp.concatenate(firsts)
    t_first = jnp.einsum("n,nsr->sr", first, jnp.concatenate(
        [ps[l] for l in levels if l >= i]))
    return tp, t_first, jnp.concatenate(weights)

  rows = []
  for i in range(L):
    # Row i is used only where level i-1 can keep data (its content and the
    # fills its parent serves it); below a storage-less level it is unused.
    r = None if (i > 0 and structure.is_dummy[i - 1]) else row(i)
    if r is None:
      rows.append(tile[i])
      continue
    tp, t_first, w = r
    if i == 0:
      # Compute units keep nothing: every iteration is an access, unless
      # the operand stays put and a mesh neighbour held it (link transfer).
      still = jnp.all(tp == 0, axis=-1) & _link_ok(structure, m)[None, :]
      rows.append(1.0 + jnp.einsum("n,ns->s", w, (~still).astype(f64)))
      continue
    same = jnp.all(tp == t_first[None], axis=-1)                  # [N, S]
    overlap = jnp.prod(jnp.maximum(0.0, ext32[i][None] - jnp.abs(tp))
                       .astype(f64), axis=-1)
    delta = jnp.where(same, tile[i][None] - overlap, tile[i][None])
    rows.append(tile[i] + jnp.einsum("n,ns->s", w, delta))
  return jnp.stack(rows)


def _link_ok(structure: Structure, m: Mapping) -> Array:
  """``bool[S]``: compute units can take a stationary operand from a neighbour.

  Timeloop (ComputeNetworkLinkTransfers) lets a child take its delta over a
  mesh link when a neighbour (linear index +-1 along X, +-X-size along Y)
  fetched the same data in the previous step; this wins whenever it removes
  parent accesses.  For the compute fan-out (level 0) with a stationary
  operand this holds for every child iff the innermost spatial loop along X
  (or along Y, when X is fully used) is irrelevant to the data space.
  Spatial loops within one axis are taken in dim order (the mapping arrays
  carry no spatial permutation), and only stationary operands are matched.
  """
  proj = np.asarray(structure.projection_array())
  relevant = jnp.asarray(np.any(proj != 0, axis=1))               # [S, D]
  D = m.temporal.shape[1]
  dims = jnp.arange(D)

  def innermost_irrelevant(factors):
    multi = factors >= 2
    first = jnp.argmax(multi)
    return jnp.any(multi) & ~relevant[:, first]                   # [S]

  sx, sy = m.spatial_x[0], m.spatial_y[0]
  x_full = jnp.prod(sx) == structure.fanout_x[0]
  del dims
  return innermost_irrelevant(sx) | (x_full & innermost_irrelevant(sy))


def multicast_groups(structure: Structure, m: Mapping, cum: Array) -> Array:
  """``[L, S]`` G: distinct data-space translations among level i's children.

  Children of a spatial fan-out whose deltas are equal are served once
  (Timeloop's ComputeAccurateMulticastedAccesses).  Child k is translated by
  ``sum_d P[s, r, d] * cum[i, d] * k_d``; ranks are independent (one rank per
  dim), so G is the product over ranks of the number of distinct values.  A
  rank with two dims (coefficient steps a, b and fan-outs n, m) has
  ``n*m - max(0, n - b/g) * max(0, m - a/g)`` distinct values, g = gcd(a, b).
  """
  spatial = tiling.spatial_factors(m)                              # [L, D]
  L = spatial.shape[0]
  per_ds = []
  for terms_of_ds in structure.rank_terms:
    g = jnp.ones((L,), spatial.dtype)
    for terms in terms_of_ds:
      if len(terms) == 1:
        (d, _), = terms
        g = g * spatial[:, d]
      elif len(terms) == 2:
        (d1, c1), (d2, c2) = terms
        n, k = spatial[:, d1], spatial[:, d2]
        a, b = c1 * cum[:-1, d1], c2 * cum[:-1, d2]
        gcd = jnp.gcd(a, b)
        overlap = (jnp.maximum(0, n - b // gcd) * jnp.maximum(0, k - a // gcd))
        g = g * (n * k - overlap)
    per_ds.append(g)
  return jnp.stack(per_ds, axis=1)


def access_counts(structure: Structure, m: Mapping) -> AccessCounts:
  """Per-instance reads/fills/updates of every level and data space.

  Mirrors ``tiling.cpp``: CollapseDataMovementNest, ComputePartitionSizes,
  ComputeParentAccessShare, MaskTiles, ProcessOuterMaskedLevels and
  ComputeReadUpdateReductionAccesses_Legacy with first-read elision.
  """
  L = m.temporal.shape[0]
  cum = tiling.cumulative_extents(m)                               # [L+1, D]
  spatial = tiling.spatial_factors(m)
  fetch = child_fetches(structure, m, cum)                         # [L, S]
  groups = multicast_groups(structure, m, cum)                     # [L, S]
  content = groups * fetch                                         # [L, S]
  size = tiling.box_size(structure, cum[1:])                       # [L, S]
  union = tiling.box_size(structure, cum[:-1] * spatial)           # [L, S]

  # Partition sizes: outermost = its tile; inward scaled by the share of the
  # parent's spatial union that one child covers (integer arithmetic).
  partition = [size[L - 1]]
  for i in range(L - 2, -1, -1):
    partition.append(partition[-1] * size[i] // union[i + 1])
  partition = jnp.stack(partition[::-1])                           # [L, S]

  # A child's fills are the fetches its parent serves it.
  parent_share = jnp.concatenate([fetch[1:], jnp.zeros_like(fetch[:1])])

  # Bypass: a skipped level's child-side accesses go to the level above,
  # multiplied by that level's own fan-out grouping.  Storage-less levels
  # keep nothing whatever the mapping says.
  keep = m.keep & ~np.asarray(structure.is_dummy)[:, None]
  content_rows = [content[0]]
  for i in range(1, L):
    folded = jnp.where(keep[i - 1], content[i], groups[i] * content_rows[-1])
    content_rows.append(folded)
  content = jnp.stack(content_rows)

  keep_i = keep.astype(content.dtype)
  kept_above = jnp.flip(jnp.cumsum(jnp.flip(keep_i, 0), 0), 0) - keep_i
  outermost = keep & (kept_above == 0)
  parent_share = jnp.where(outermost, 0, parent_share)

  rw = np.asarray(structure.read_write)[None, :]
  updates = jnp.where(rw, content, 0)
  reads = jnp.where(rw, content - partition, content)
  fills = jnp.where(rw & ~outermost, parent_share - partition, parent_share)
  reductions = jnp.where(rw, reads, 0)

  zero = jnp.zeros_like(content)
  kept = lambda x: jnp.where(keep, x, zero)
  instances = jnp.cumprod(jnp.prod(spatial, axis=1)[::-1])[::-1]   # prod l>=i
  utilized = jnp.concatenate([instances[1:], jnp.ones_like(instances[:1])])
  return AccessCounts(
      reads=kept(reads), fills=kept(fills), updates=kept(updates),
      temporal_reductions=kept(reductions),
      utilized_capacity=kept(size), utilized_instances=utilized,
      multicast_groups=groups)
