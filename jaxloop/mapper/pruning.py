"""The pruning rules of the proof search (:mod:`jaxloop.mapper.proof`).

Each rule removes mappings that cannot be strictly better than one that is
kept or already evaluated, under the exact model (:mod:`jaxloop.model`);
docs/proof-search.md gives the argument for each, and tests/test_proof.py
checks each against brute-force enumeration.

* ``bound``: every mapping of a spatial assignment (the factors at the
  spatial slots of every dim) has ``cycles >= compute cycles`` and
  ``energy >= floor`` (:class:`Floor`); a whole assignment whose bound is
  not below the best mapping found is skipped.
* ``capacity``: whether a mapping's tiles fit its levels depends only on
  its factorization and keep bits, never on its loop orders; a
  (factorization, keep) pair that overflows is skipped with all its orders.
* ``unit_loops``: loops of factor 1 do not change any count; orders that
  differ only in where they sit are one order.
* ``innermost_order``: the order of the innermost storage level (a level
  with storage and no fan-out to the compute units) changes no count.
* ``top_level``: the outermost level's access energy for a data space that
  the level under it keeps depends only on the factorization, the keep
  bits and the outermost level's loop order (:class:`TopLevel`); its
  minimum over those orders tightens the energy floor of a (factorization,
  keep) pair, which is skipped when that bound is not below the best.
"""
from __future__ import annotations

import dataclasses
import itertools
import math
from typing import Iterator

import numpy as np

from jaxloop.mapspace import Genome, Mapspace, TEMPORAL

RULES = ("bound", "capacity", "unit_loops", "innermost_order", "top_level")
# Order sets of at most this many rows are kept for reuse.
CACHED_ORDERS = 1 << 16
# Relative slack of the energy floor against float64 rounding.
ROUNDING_SLACK = 1e-9


# ------------------------------------------------------------ assignments
@dataclasses.dataclass(frozen=True)
class Assignment:
  """A spatial assignment: every factorization whose spatial factors are
  ``groups`` (one group of :class:`~jaxloop.mapspace.DimSpace` per dim).

  Attributes:
    groups: ``[D]`` group index of each dim.
    compute_cycles: product of the temporal factors (the same for every
      factorization of the assignment: bound / spatial product per dim).
    factorizations: how many factorizations it holds.
  """
  groups: tuple[int, ...]
  compute_cycles: int
  factorizations: int


def spatial_assignments(ms: Mapspace) -> list[Assignment]:
  """Every spatial assignment whose products fit the fan-outs (the
  mapspace's dynamic program over spatial products)."""
  D = len(ms.dims)
  bounds = ms.structure.dim_bounds
  out: list[Assignment] = []

  def rec(d, state, groups):
    if d == D:
      cycles, count = 1, 1
      for k, g in enumerate(groups):
        spatial = int(np.prod(ms.dims[k].group_vec[g]))
        cycles *= bounds[k] // spatial
        count *= int(ms.dims[k].group_count[g])
      out.append(Assignment(groups, cycles, count))
      return
    t = ms._trans[d][state]
    for g in np.nonzero(t >= 0)[0]:
      rec(d + 1, t[g], groups + (int(g),))

  rec(0, 0, ())
  return out


def factorizations(ms: Mapspace, a: Assignment, chunk: int
                   ) -> Iterator[np.ndarray]:
  """``[n, D]`` factorization indices (rows of each dim's table) of the
  assignment, in chunks of at most ``chunk`` rows."""
  lists = [ms.dims[d].members[ms.dims[d].offsets[g]:ms.dims[d].offsets[g + 1]]
           for d, g in enumerate(a.groups)]
  it = itertools.product(*lists)
  while True:
    rows = list(itertools.islice(it, chunk))
    if not rows:
      return
    yield np.asarray(rows, np.int64).reshape(len(rows), len(lists))


def temporal_factors(ms: Mapspace, fidx: np.ndarray) -> np.ndarray:
  """``[n, L, D]`` temporal factors of factorizations ``fidx [n, D]``."""
  L = ms.structure.num_levels
  return np.stack([ms.dims[d].table[fidx[:, d], TEMPORAL * L:(TEMPORAL + 1)
                                    * L] for d in range(len(ms.dims))],
                  axis=-1)


# ------------------------------------------------------------------ bound
@dataclasses.dataclass(frozen=True)
class Floor:
  """A lower bound on every legal mapping's energy (pJ), given its compute
  cycles C and keep bits: ``fixed + leak_per_cycle * C + serving(C, keep)``.

  ``fixed`` is the computes' energy (the same for every mapping) plus the
  compulsory traffic of the outermost level (each touched word of a
  read-only data space read, each of a read-write one updated, at least
  once; :func:`touched_words`);
  ``leak_per_cycle`` the leakage of one instance of every level;
  ``serving`` (:class:`Serving`) the accesses with which the innermost
  level keeping each data space serves the computes.
  ``usable`` is False where an energy in the tables is negative (then no
  energy bound is used: 0 and 0).  :meth:`energy` gives up
  :data:`ROUNDING_SLACK` (relative) so that the model's float64 sums,
  taken in another order, never fall below it.
  """
  fixed: float
  leak_per_cycle: float
  usable: bool
  compulsory: tuple = ()   # [S] pJ at the outermost level (0: not counted)
  serving: "Serving | None" = dataclasses.field(default=None, compare=False)
  keeps: "np.ndarray | None" = dataclasses.field(default=None, compare=False)

  def energy(self, compute_cycles, keeps=None) -> np.ndarray:
    """``[n]`` pJ, the floor at these compute cycles ``[n]``: the least
    over the keep choices ``bool[K, L, S]`` (default: every choice of the
    mapspace), or ``[n, K]`` per choice when ``keeps`` is given."""
    c = np.asarray(compute_cycles, np.float64)
    base = self.fixed + self.leak_per_cycle * c
    if self.serving is None:
      out = base if keeps is None else np.repeat(base[..., None],
                                                 len(keeps), axis=-1)
      return out * (1.0 - ROUNDING_SLACK)
    per_keep = base[..., None] + self.serving.energy(
        c, self.keeps if keeps is None else keeps)                 # [n, K]
    out = per_keep.min(axis=-1) if keeps is None else per_keep
    return out * (1.0 - ROUNDING_SLACK)


class Serving:
  """The accesses with which the innermost level keeping a data space
  serves the computes, a lower bound that no loop order changes.

  For data space s, let l0 be the innermost level keeping it.  When no
  level 0..l0 has a physical fan-out, every legal mapping's
  ``reads[l0, s]`` (read-only s) is at least, and ``updates[l0, s]``
  (read-write s) equal to, the compute cycles C per instance (one access
  per compute, folded through the bypassing levels below unchanged); the
  reads of a read-write s are at least ``C - P`` (first-read elision
  removes the partition, which is at most the data space's bounding box
  P), and ``l0`` is used by ``computes / C`` instances (every spatial
  factor lies above it).  So ``energy[l0, s] >= (ceil(C / block) * E +
  ceil(max(0, C - P) / block) * E_read [read-write only]) * min(computes
  / C, instances / cluster_size)`` at l0 (E: its read, or update, energy).
  Where l0 is the outermost level, whose compulsory term the floor already
  holds, only the excess over that term is added.  Argument in
  docs/proof-search.md.
  """

  def __init__(self, structure, read: np.ndarray, update: np.ndarray,
               compulsory):
    s = structure
    self.dummy = np.asarray(s.is_dummy, bool)
    fanned = [l for l in range(s.num_levels)
              if s.fanout_x[l] * s.fanout_y[l] > 1]
    self.first_fanout = min(fanned, default=s.num_levels)
    rw = np.asarray(s.read_write, bool)
    self.per_access = np.where(rw[None], update[:, None], read[:, None])
    self.rw_reads = np.where(rw[None], read[:, None], 0.0)         # [L, S]
    self.box = np.asarray([
        math.prod(sum(c * (s.dim_bounds[d] - 1) for d, c in terms) + 1
                  for terms in ranks) for ranks in s.rank_terms],
        np.float64)                                                # [S]
    self.block = np.asarray(s.block_size, np.float64)
    self.cap = (np.asarray(s.instances, np.float64)
                / np.asarray(s.cluster_size, np.float64))
    self.computes = float(math.prod(s.dim_bounds))
    self.top = s.num_levels - 1
    self.compulsory = np.asarray(compulsory, np.float64)

  def innermost_keepers(self, keeps: np.ndarray) -> np.ndarray:
    """``i64[K, S]`` the innermost level keeping each data space under
    each keep choice ``bool[K, L, S]`` (-1: none keeps it)."""
    kept = keeps & ~self.dummy[None, :, None]
    return np.where(kept.any(axis=1), np.argmax(kept, axis=1), -1)

  def energy(self, compute_cycles: np.ndarray, keeps: np.ndarray
             ) -> np.ndarray:
    """``[n, K]`` pJ at compute cycles ``[n]`` and keep choices
    ``bool[K, L, S]``: the sum of :meth:`terms` over the data spaces."""
    return np.sum(self.terms(compute_cycles, keeps), axis=-1)

  def terms(self, compute_cycles: np.ndarray, keeps: np.ndarray
            ) -> np.ndarray:
    """``[n, K, S]`` pJ: the least ``energy[l0, s]`` (less the outermost
    level's compulsory term where l0 is that level; 0 where the bound does
    not apply)."""
    c = np.asarray(compute_cycles, np.float64)[:, None, None]      # [n,1,1]
    l0 = self.innermost_keepers(keeps)                             # [K, S]
    used = (l0 >= 0) & (l0 < self.first_fanout)
    at = np.maximum(l0, 0)
    s_idx = np.arange(l0.shape[1])[None]
    e = self.per_access[at, s_idx][None]                           # [1,K,S]
    clusters = np.minimum(self.computes / c, self.cap[at][None])
    block = self.block[at][None]
    elided = np.ceil(np.maximum(0.0, c - self.box) / block)
    term = (np.ceil(c / block) * e
            + elided * self.rw_reads[at, s_idx][None]) * clusters  # [n,K,S]
    comp = np.where(l0 == self.top, self.compulsory[None], 0.0)[None]
    term = np.maximum(term, comp) - comp
    return np.where(used[None], term, 0.0)


def touched_words(structure) -> list[int]:
  """``[S]`` words of each data space that some compute touches: the
  product over its ranks of the distinct values of the rank's expression
  (``sum coef * index`` over its dims; ranks use disjoint dims, so the
  touched set is the product of the per-rank sets).  A strided rank
  without a window covering the stride touches fewer words than its
  bounding box."""
  bounds = structure.dim_bounds
  out = []
  for ranks in structure.rank_terms:
    words = 1
    for terms in ranks:
      if not terms:
        continue
      words *= _distinct_values([(c, bounds[d]) for d, c in terms])
    out.append(words)
  return out


def _distinct_values(terms) -> int:
  """Distinct values of ``sum c_k * i_k`` with ``0 <= i_k < n_k`` for
  ``terms = [(c_k, n_k), ...]`` (c_k > 0); exact by enumeration when the
  product of the n_k is at most 2**22, else the largest n_k (a lower
  bound: one index alone gives distinct values)."""
  if len(terms) == 1:
    return int(terms[0][1])
  if math.prod(n for _, n in terms) > 1 << 22:
    return int(max(n for _, n in terms))
  values = np.zeros(1, np.int64)
  for c, n in terms:
    values = np.unique((values[:, None] + c * np.arange(n)[None]).ravel())
  return int(len(values))


def energy_floor(ms: Mapspace, params) -> Floor:
  """The :class:`Floor` of a mapspace under ``params`` (``ArchParams``)."""
  s = ms.structure
  arrays = [np.asarray(getattr(params, k), np.float64) for k in
            ("read_energy", "fill_energy", "update_energy", "leak_energy",
             "compute_energy")]
  if any(np.any(a < 0) for a in arrays):
    return Floor(0.0, 0.0, False, (0.0,) * s.num_dataspaces)
  read, _, update, leak, mac = arrays
  top = s.num_levels - 1
  clusters = min(1.0, s.instances[top] / s.cluster_size[top])
  compulsory = []
  for k, words in enumerate(touched_words(s)):
    energy = update[top] if s.read_write[k] else read[top]
    compulsory.append(0.0 if ms.keep_rule[top, k] != 1 else
                      math.ceil(words / s.block_size[top]) * energy
                      * clusters)
  computes = math.prod(s.dim_bounds)
  fixed = float(computes) * float(mac) + sum(compulsory)
  return Floor(fixed, float(np.sum(leak)), True, tuple(compulsory),
               Serving(s, read, update, compulsory), keep_choices(ms))


def bound_keys(names: tuple[str, ...], compute_cycles, energy
               ) -> np.ndarray:
  """``[n, M]`` lower bounds of the objective keys (energy pJ, delay
  cycles, EDP J*cycles, as :func:`jaxloop.mapper.objective.objective_keys`)
  from lower bounds of the compute cycles ``[n]`` and energy ``[n]``."""
  from jaxloop.types import edp
  cycles = np.asarray(compute_cycles, np.float64)
  energy = np.asarray(energy, np.float64)
  column = {"energy": energy, "delay": cycles, "edp": edp(energy, cycles)}
  return np.stack([column[n] for n in names], axis=-1)


def not_better(bound: np.ndarray, best) -> bool:
  """Whether no key ``>= bound`` (elementwise) can be lexicographically
  below ``best`` (no best yet: False)."""
  if best is None:
    return False
  return tuple(float(x) for x in bound) >= tuple(float(x) for x in best)


# --------------------------------------------------------------- capacity
def keep_choices(ms: Mapspace) -> np.ndarray:
  """``bool[K, L, S]`` every keep/bypass choice of the mapspace, in the
  order :meth:`Mapspace.enumerate_genomes` takes them."""
  s = ms.structure
  nk = len(ms.free_keep)
  keeps = np.broadcast_to(ms.keep_rule == 1,
                          (2 ** nk, s.num_levels, s.num_dataspaces)).copy()
  if nk:
    bits = (np.arange(2 ** nk)[:, None] >> np.arange(nk)[None, :]) & 1
    keeps[:, ms.free_keep[:, 0], ms.free_keep[:, 1]] = bits.astype(bool)
  return keeps


def capacity_fits(ms: Mapspace, params, tiles: np.ndarray,
                  keeps: np.ndarray) -> np.ndarray:
  """``bool[n, K]``: the kept tiles fit every level (the model's
  ``capacity_ok``: sum of kept tile words <= capacity and, where the
  capacity is finite, >= ``min_utilization`` of it).

  Args:
    tiles: ``[n, L, S]`` tile words of each factorization (the
      ``utilized_capacity`` of a mapping keeping everything).
    keeps: ``bool[K, L, S]``.
  """
  dummy = np.asarray(ms.structure.is_dummy)[None, :, None]
  kept = (keeps & ~dummy).astype(np.float64)                     # [K, L, S]
  used = np.einsum("nls,kls->nkl", tiles.astype(np.float64), kept)
  cap = np.asarray(params.capacity, np.float64)
  finite = np.isfinite(cap)
  floor = np.where(finite, cap, 0.0) * np.asarray(params.min_utilization,
                                                  np.float64)
  return np.all((used <= cap) & ((used >= floor) | ~finite), axis=-1)


# ----------------------------------------------------------------- orders
def innermost_order_free(ms: Mapspace) -> bool:
  """Whether the innermost_order rule applies: level 0 holds storage and
  has no fan-out to the compute units."""
  s = ms.structure
  return (not s.is_dummy[0]) and s.fanout_x[0] * s.fanout_y[0] == 1


def level_orders(ms: Mapspace, temporal: np.ndarray, merge_innermost: bool,
                 cache: dict) -> tuple[np.ndarray, int, int]:
  """Representative loop orders of one factorization.

  Per level: the constraint's prefix, then every order of the free loops
  with factor > 1 (one order, by dim index, at level 0 when
  ``merge_innermost``), then the free unit loops by dim index.

  Args:
    temporal: ``[L, D]`` temporal factors.
    cache: a dict the caller keeps (the orders of each pattern of active
      loops; callers must not modify the arrays).

  Returns:
    ``(orders i32[O, L, D], active, all)``: the representatives, the
    orders that differ in some loop of factor > 1 (what the unit_loops
    rule leaves) and all orders of the mapspace (Python ints).
  """
  s = ms.structure
  L = s.num_levels
  bigs = tuple(tuple(d for d in ms.free_order[l] if temporal[l, d] > 1)
               for l in range(L))
  hit = cache.get(bigs)
  if hit is None:
    per_level, active, total = [], 1, 1
    for l, big in enumerate(bigs):
      total *= math.factorial(len(ms.free_order[l]))
      active *= 1 if s.is_dummy[l] else math.factorial(len(big))
      per_level.append(_orders_of_level(ms, l, big,
                                        l == 0 and merge_innermost))
    sizes = [len(p) for p in per_level]
    pick = np.indices(sizes).reshape(L, -1)                        # [L, O]
    orders = np.stack([per_level[l][pick[l]] for l in range(L)], axis=1)
    hit = (orders, active, total)
    if len(orders) <= CACHED_ORDERS:
      cache[bigs] = hit
  return hit


def _orders_of_level(ms: Mapspace, l: int, big: tuple[int, ...],
                     one: bool) -> np.ndarray:
  """``i32[P, D]`` orders of level l: prefix, the active free loops
  ``big`` (every order, or one when ``one``), the unit loops by dim."""
  s = ms.structure
  if s.is_dummy[l]:
    rows = [tuple(range(s.num_dims))]
  else:
    unit = tuple(d for d in ms.free_order[l] if d not in big)
    perms = [big] if one else list(itertools.permutations(big))
    rows = [tuple(ms.prefix[l]) + p + unit for p in perms]
  return np.asarray(rows, np.int32).reshape(len(rows), s.num_dims)


def genomes(fidx: np.ndarray, orders: np.ndarray, keeps: np.ndarray
            ) -> Genome:
  """Every (order, keep) of one factorization ``fidx [D]`` as a Genome:
  ``[O * K]`` rows, keeps innermost."""
  no, nk = len(orders), len(keeps)
  return Genome(np.broadcast_to(fidx, (no * nk, len(fidx))).copy(),
                np.repeat(orders, nk, axis=0),
                np.tile(keeps, (no, 1, 1)))


# -------------------------------------------------------------- top level
class TopLevel:
  """The ``top_level`` rule: an energy floor per (factorization, keep)
  from the exact parts of its energy that few or no loop orders change.

  S1: the data spaces kept by the outermost level and the level under it.
  For s in S1, ``Stats.energy[top, s]`` and the fills of the level under
  it are functions of the factorization, the keep bits and the outermost
  level's loop order only (no bypass folding reaches them; the row of the
  outermost level's children holds only its own loops).  For a data space
  whose innermost keeper l0 and the level above it have no fan-out, the
  reads and updates of l0 do not depend on any loop order (:meth:`exact_l0`).
  So, per (factorization, keep),

    ``energy >= floor(C0, keep) - sum_{s in S1} compulsory_s
                - sum_{s exact at l0} serving_s
                + min_{top orders} sum_{s in S1} (energy[top, s]
                                                  + fill energy[top-1, s])
                + sum_{s exact at l0} (read + update energy)[l0, s]``

  (the floor and its serving terms as in :class:`Floor`, :class:`Serving`;
  each replaced term is a lower bound of the exact term replacing it, and
  the terms are disjoint parts of the energy).
  """

  STATS = ("energy", "reads", "fills", "updates", "utilized_instances")

  def __init__(self, ms: Mapspace, floor: Floor, params):
    s = ms.structure
    self.top = s.num_levels - 1
    self.floor = floor
    self.below_dummy = bool(s.is_dummy[self.top - 1])
    self.compulsory = np.asarray(floor.compulsory, np.float64)
    self.read, self.fill, self.update = (
        np.asarray(getattr(params, k), np.float64)
        for k in ("read_energy", "fill_energy", "update_energy"))
    self.block = np.asarray(s.block_size, np.float64)
    self.cap = (np.asarray(s.instances, np.float64)
                / np.asarray(s.cluster_size, np.float64))

  @staticmethod
  def applies(ms: Mapspace, names: tuple[str, ...], floor: Floor) -> bool:
    """Energy enters the objective, the floor is usable and there are at
    least two levels."""
    return (floor.usable and ms.structure.num_levels > 1
            and any(n in ("energy", "edp") for n in names))

  def exact_mask(self, keeps: np.ndarray) -> np.ndarray:
    """``bool[K, S]``: S1 of each keep choice ``[K, L, S]``."""
    if self.below_dummy:
      return np.zeros(keeps.shape[::2], bool)
    return keeps[:, self.top - 1] & keeps[:, self.top]

  def exact_l0(self, keeps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(l0 i64[K, S], bool[K, S])``: each data space's innermost keeper,
    and whether its reads and updates are order-free: l0 is below the
    outermost level and no level 0..l0+1 has a fan-out."""
    serving = self.floor.serving
    l0 = serving.innermost_keepers(keeps)
    return l0, (l0 >= 0) & (l0 < self.top) & (l0 + 1 < serving.first_fanout)

  def _action_energy(self, stats: dict, level, counts) -> np.ndarray:
    """pJ of ``sum (ceil(count / block) * E)`` over ``counts`` (pairs of
    a Stats field and an ``[L]`` energy) at ``level`` (``[K, S]`` or an
    int) times the level's utilized clusters, ``[R, K, S]``."""
    _, K, _, S = stats["energy"].shape
    lv = np.broadcast_to(np.asarray(level), (K, S))
    pick = lambda a: a[:, np.arange(K)[:, None], lv, np.arange(S)[None]]
    block, cap = self.block[lv], self.cap[lv]
    out = sum(np.ceil(pick(stats[f]) / block) * e[lv] for f, e in counts)
    return out * np.minimum(pick(stats["utilized_instances"]), cap)

  def energy(self, stats: dict, keeps: np.ndarray, compute_cycles: int
             ) -> np.ndarray:
    """``[K]`` pJ floors of one factorization's keep choices.

    Args:
      stats: :data:`STATS` fields ``[R, K, L, S]`` of the mappings with
        each outermost order (R) and keep choice (K).
      keeps: ``bool[K, L, S]`` the keep choices.
    """
    top, f = self.top, self.floor
    c = np.asarray([compute_cycles])
    mask = self.exact_mask(keeps)                                  # [K, S]
    fills = self._action_energy(stats, max(top - 1, 0),
                                [("fills", self.fill)])
    at_top = stats["energy"][:, :, top] + fills                    # [R,K,S]
    exact = np.min(np.sum(np.where(mask[None], at_top, 0.0), axis=-1),
                   axis=0)                                         # [K]
    replaced = np.sum(np.where(mask, self.compulsory[None], 0.0), axis=-1)
    l0, free = self.exact_l0(keeps)
    own = self._action_energy(stats, np.maximum(l0, 0),
                              [("reads", self.read),
                               ("updates", self.update)])          # [R,K,S]
    own = np.sum(np.where(free[None], own, 0.0), axis=-1).min(axis=0)
    serving = np.sum(np.where(free, f.serving.terms(c, keeps)[0], 0.0),
                     axis=-1)                                      # [K]
    rest = f.energy(c, keeps)[0]
    return rest + (exact - replaced + own - serving) * (1.0 - ROUNDING_SLACK)


def top_order_representatives(orders: np.ndarray, top: int) -> np.ndarray:
  """Indices of one order per distinct outermost-level order (``orders``:
  ``[O, L, D]``), ascending."""
  return np.sort(np.unique(orders[:, top], axis=0, return_index=True)[1])
