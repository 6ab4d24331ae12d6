"""The mapspace: every mapping the constraints allow (numpy, off-jit).

Timeloop's "uber" mapspace is the product of three parts:

* index factorizations: per problem dim, a perfect factorization of its
  bound over the slots: each level's temporal slot and, where the level fans
  out (``fanout > 1``), its spatial X and Y slots.  Storage-less
  ``inter_*_spatial`` levels only have spatial slots.  A dim goes to X or to
  Y of a level, never both.  The spatial product of a level must fit its
  fan-out (``prod_d x[l, d] <= fanout_x[l]``, likewise Y).
* loop permutations: per level, the order of its temporal loops.
* bypass: per level and data space, keep or bypass (dummy levels keep
  nothing; the outermost level keeps everything).

Constraints are folded into the encoding: fixed factors are set, prime
exponents are only distributed among free slots, bounds and split
restrict the per-dim tables, permutation prefixes are fixed, keep/bypass
bits are fixed.  The cross-dim fan-out limit is handled by a dynamic
program over the spatial products, which gives the exact size and uniform
samples without rejection.

A mapping of the space is stored compactly as a :class:`Genome`: one
factorization index per dim plus the loop order and the keep bits.
"""
from __future__ import annotations

import dataclasses
import itertools
import math
from typing import Iterator, Optional, Sequence

import numpy as np

from jaxloop.errors import SpecError
from jaxloop.spec import types as st
from jaxloop.structure import Structure
from jaxloop.types import FACTOR_DTYPE, Mapping

# Slot kinds; slot ``k = kind * L + level``.
TEMPORAL, SPATIAL_X, SPATIAL_Y = 0, 1, 2
_MAX_ROWS = 4_000_000


@dataclasses.dataclass(frozen=True)
class Genome:
  """A batch of mappings of one mapspace, compactly.

  Attributes:
    fidx: ``[B, D]`` index into each dim's factorization table.
    order: ``i32[B, L, D]`` temporal loop order, innermost first.
    keep: ``bool[B, L, S]``.
  """
  fidx: np.ndarray
  order: np.ndarray
  keep: np.ndarray

  def __len__(self) -> int:
    return int(self.fidx.shape[0])

  def take(self, idx) -> "Genome":
    return Genome(self.fidx[idx], self.order[idx], self.keep[idx])

  @staticmethod
  def concat(parts: Sequence["Genome"]) -> "Genome":
    return Genome(np.concatenate([p.fidx for p in parts]),
                  np.concatenate([p.order for p in parts]),
                  np.concatenate([p.keep for p in parts]))


@dataclasses.dataclass
class DimSpace:
  """The allowed factorizations of one dim.

  Attributes:
    table: ``[N, 3L]`` factor of each slot (temporal, X, Y per level).
    free: slots whose factor varies in ``table``.
    group: ``[N]`` index of the row's spatial vector in ``group_vec``.
    group_vec: ``[G, P]`` factors at the mapspace's spatial slots.
    members: rows sorted by group; ``offsets`` ``[G + 1]`` into it.
    neighbors: ``[N, K]`` rows one prime move away (``-1`` padding).
  """
  table: np.ndarray
  free: tuple[int, ...]
  group: np.ndarray
  group_vec: np.ndarray
  members: np.ndarray
  offsets: np.ndarray
  neighbors: Optional[np.ndarray] = None

  @property
  def group_count(self) -> np.ndarray:
    return np.diff(self.offsets)


def prime_list(n: int) -> list[int]:
  """Prime factors of n with multiplicity, ascending (12 -> [2, 2, 3])."""
  return [p for p, e in sorted(prime_factors(n).items()) for _ in range(e)]


def random_mappings(structure, n: int, rng: np.random.Generator,
                    outer_weight: float = 1.0, keep_probability: float = 0.6):
  """n random perfect factorizations, loop orders and keep bits (no
  constraints; fan-out and capacity may be exceeded — see ``Stats.valid``).

  Every prime factor of every dim goes to one slot (temporal slot of a
  storage level, or a spatial X/Y slot with fan-out), the outermost
  temporal slot ``outer_weight`` times as likely as the others; storage-less
  levels keep nothing and the outermost level keeps everything.  For tests
  and benchmarks; mappers sample ``Mapspace`` instead.

  Returns:
    ``Mapping`` with a leading batch axis ``[n, ...]`` (numpy).
  """
  L, D, S = structure.num_levels, structure.num_dims, structure.num_dataspaces
  arrays = {k: np.ones((n, L, D), FACTOR_DTYPE) for k in "txy"}
  slots = [(l, "t") for l in range(L) if not structure.is_dummy[l]]
  slots += [(l, "x") for l in range(L) if structure.fanout_x[l] > 1]
  slots += [(l, "y") for l in range(L) if structure.fanout_y[l] > 1]
  weight = np.array([outer_weight if (l == L - 1 and kind == "t") else 1.0
                     for l, kind in slots])
  for d, bound in enumerate(structure.dim_bounds):
    for p in prime_list(bound):
      pick = rng.choice(len(slots), size=n, p=weight / weight.sum())
      for k, (l, kind) in enumerate(slots):
        arrays[kind][pick == k, l, d] *= p
  order = np.argsort(rng.random((n, L, D)), axis=-1).astype(np.int32)
  keep = rng.random((n, L, S)) < keep_probability
  keep[:, -1, :] = True
  keep[:, np.asarray(structure.is_dummy), :] = False
  return Mapping(temporal=arrays["t"], spatial_x=arrays["x"],
                 spatial_y=arrays["y"], order=order, keep=keep)


def prime_factors(n: int) -> dict[int, int]:
  """``{prime: exponent}`` of n."""
  out, p = {}, 2
  while p * p <= n:
    while n % p == 0:
      out[p] = out.get(p, 0) + 1
      n //= p
    p += 1
  if n > 1:
    out[n] = out.get(n, 0) + 1
  return out


def _compositions(total: int, parts: int) -> np.ndarray:
  """``[C, parts]`` all non-negative vectors summing to ``total``."""
  rows = []
  for bars in itertools.combinations(range(total + parts - 1), parts - 1):
    prev, row = -1, []
    for b in bars:
      row.append(b - prev - 1)
      prev = b
    row.append(total + parts - 2 - prev)
    rows.append(row)
  return np.asarray(rows, np.int64).reshape(-1, parts)


@dataclasses.dataclass
class _DimRules:
  """Constraint-derived rules for one dim (built from directives)."""
  allowed: np.ndarray          # bool [3L]
  fixed: dict                  # slot -> value
  upper: dict                  # slot -> max (temporal); spatial: level -> max
  lower: dict
  spatial_fixed: dict          # level -> x*y value
  spatial_upper: dict
  spatial_lower: dict


class Mapspace:
  """Constrained mapspace of one (architecture, problem) pair.

  Build with :meth:`from_spec`.  All arrays are numpy; nothing is jitted.

  Attributes:
    structure: the static structure.
    dims: ``[D]`` :class:`DimSpace`.
    prefix: ``[L]`` fixed innermost loop dims of each level.
    keep_rule: ``i8[L, S]``: 1 keep, 0 bypass, -1 free.
    spatial_slots: ``[P]`` slots with fan-out > 1; ``caps``: ``[P]`` fan-outs.
    free_order: ``[L]`` dims whose loop position is free (not in the prefix).
    free_keep: ``[F, 2]`` (level, data space) pairs whose keep bit is free.
    ignored: constraint kinds that are not honoured (descriptions).
  """

  def __init__(self, structure: Structure, dims, prefix, keep_rule,
               spatial_slots, caps, ignored=()):
    self.structure = structure
    self.dims: list[DimSpace] = dims
    self.prefix: tuple[tuple[int, ...], ...] = prefix
    self.keep_rule = keep_rule
    self.spatial_slots = np.asarray(spatial_slots, np.int64)
    self.caps = np.asarray(caps, np.int64)
    self.ignored = tuple(ignored)
    self._build_dp()
    self.free_keep = np.argwhere(keep_rule < 0)          # [F, 2]
    self.free_order = tuple(
        tuple(d for d in range(structure.num_dims) if d not in prefix[l])
        if not structure.is_dummy[l] else ()
        for l in range(structure.num_levels))

  # ------------------------------------------------------------------ build
  @classmethod
  def from_spec(cls, spec: st.Spec, structure: Structure,
                constraints: Optional[Sequence[st.Directive]] = None
                ) -> "Mapspace":
    """Mapspace of ``spec`` under its constraints (or ``constraints``).

    Raises:
      SpecError: unknown targets/dims/data spaces, or constraints that leave
        no mapping (e.g. fixed factors that do not divide the bound).
    """
    s = structure
    L, D, S = s.num_levels, s.num_dims, s.num_dataspaces
    K = 3 * L
    directives = spec.constraints if constraints is None else constraints
    rules = []
    for d in range(D):
      allowed = np.zeros(K, bool)
      for l in range(L):
        allowed[TEMPORAL * L + l] = not s.is_dummy[l]
        allowed[SPATIAL_X * L + l] = s.fanout_x[l] > 1
        allowed[SPATIAL_Y * L + l] = s.fanout_y[l] > 1
      rules.append(_DimRules(allowed, {}, {}, {}, {}, {}, {}))
    prefix = [() for _ in range(L)]
    keep_rule = np.full((L, S), -1, np.int8)
    ignored = []

    def dim_of(name, where, path):
      if name not in s.dim_names:
        raise SpecError(f"unknown dim '{name}'", path=path, where=where,
                        hint="Problem dims: " + ", ".join(s.dim_names))
      return s.dim_names.index(name)

    for k, c in enumerate(directives):
      path = f"constraints[{k}]"
      if c.target not in s.level_names:
        raise SpecError(f"constraint target '{c.target}' is not a storage "
                        "level", path=path + ".target", where=c.where,
                        hint="Levels: " + ", ".join(reversed(s.level_names)))
      l = s.level_index(c.target)
      if c.type == "temporal":
        for name, v in c.factors or ():
          if int(v) > 0:
            d = dim_of(name, c.where, path + ".factors")
            if s.is_dummy[l] and int(v) != 1:
              raise SpecError(
                  f"temporal factor {name}={v} at storage-less level "
                  f"'{c.target}'", path=path + ".factors", where=c.where)
            rules[d].fixed[TEMPORAL * L + l] = int(v)
        for name, op, v in c.factor_bounds:
          d = dim_of(name, c.where, path + ".factors")
          tab = rules[d].upper if op == "<=" else rules[d].lower
          tab[TEMPORAL * L + l] = int(v)
        if c.permutation is not None and not s.is_dummy[l]:
          perm = []
          for name in c.permutation:
            d = dim_of(name, c.where, path + ".permutation")
            if d not in perm:
              perm.append(d)
          if len(perm) >= D - 1:
            perm = perm + [d for d in range(D) if d not in perm]
          prefix[l] = tuple(perm)
      elif c.type == "spatial":
        for name, v in c.factors or ():
          if int(v) > 0:
            d = dim_of(name, c.where, path + ".factors")
            rules[d].spatial_fixed[l] = int(v)
        for name, op, v in c.factor_bounds:
          d = dim_of(name, c.where, path + ".factors")
          tab = rules[d].spatial_upper if op == "<=" else rules[d].spatial_lower
          tab[l] = int(v)
        if c.split is not None and c.permutation is not None:
          for pos, name in enumerate(c.permutation):
            d = dim_of(name, c.where, path + ".permutation")
            off = SPATIAL_Y if pos < c.split else SPATIAL_X
            rules[d].allowed[off * L + l] = False
      elif c.type == "bypass":
        for names, value in ((c.keep, 1), (c.bypass, 0)):
          for name in names or ():
            keep_rule[l, s.dataspace_index(name, path, c.where)] = value
      else:
        ignored.append(f"{c.type} constraint on {c.target} ({c.where})")
      if c.no_multicast:
        ignored.append(f"no_multicast on {c.target} ({c.where})")
    for l in range(L):
      if s.is_dummy[l]:
        keep_rule[l] = 0
    keep_rule[L - 1] = 1

    spatial_slots, caps = [], []
    for l in range(L):
      for kind, fan in ((SPATIAL_X, s.fanout_x[l]), (SPATIAL_Y, s.fanout_y[l])):
        if fan > 1:
          spatial_slots.append(kind * L + l)
          caps.append(fan)
    dims = [_dim_space(s, d, rules[d], spatial_slots, caps) for d in range(D)]
    return cls(s, dims, tuple(prefix), keep_rule, spatial_slots, caps,
               ignored)

  def _build_dp(self):
    """Reachable spatial-product states and exact completion counts."""
    caps = self.caps
    states = [np.ones((1, len(caps)), np.int64)]
    trans = []
    for ds in self.dims:
      cur = states[-1]
      prod = cur[:, None, :] * ds.group_vec[None, :, :]       # [Ns, G, P]
      ok = np.all(prod <= caps, axis=-1)
      if not len(caps):
        trans.append(np.zeros(ok.shape, np.int64))
        states.append(cur)
        continue
      uniq, inv = np.unique(prod[ok], axis=0, return_inverse=True)
      t = np.full(ok.shape, -1, np.int64)
      t[ok] = inv.reshape(-1)
      trans.append(t)
      states.append(uniq.reshape(-1, len(caps)))
    counts = [None] * (len(self.dims) + 1)
    counts[-1] = np.array([1] * len(states[-1]), dtype=object)
    cum = [None] * len(self.dims)
    for d in reversed(range(len(self.dims))):
      gc = np.asarray([int(c) for c in self.dims[d].group_count], object)
      t = trans[d]
      nxt = counts[d + 1]
      w = np.zeros(t.shape, dtype=object)
      w[t >= 0] = nxt[t[t >= 0]]
      w = w * gc[None, :]
      counts[d] = w.sum(axis=1)
      tot = counts[d]
      with np.errstate(invalid="ignore", divide="ignore"):
        p = np.asarray([[float(x) for x in row] for row in w], np.float64)
        p = p / np.maximum(p.sum(axis=1, keepdims=True), 1e-300)
      cum[d] = np.cumsum(p, axis=1)
    self._trans, self._cum, self._counts = trans, cum, counts

  # ------------------------------------------------------------------ sizes
  def size(self) -> dict[str, int]:
    """Exact mapspace size by component (Python ints).

    Returns:
      ``factorizations`` (index factorizations within fan-outs),
      ``permutations`` (loop orders, all ``(D - prefix)!`` per level),
      ``bypass`` (``2 ** free keep bits``) and their product ``total``.
    """
    fact = int(self._counts[0][0])
    perms = 1
    for l in range(self.structure.num_levels):
      perms *= math.factorial(len(self.free_order[l]))
    byp = 2 ** len(self.free_keep)
    return {"factorizations": fact, "permutations": perms, "bypass": byp,
            "total": fact * perms * byp}

  def enumeration_size(self) -> int:
    """Mappings :meth:`enumerate_chunks` yields (equivalent orders merged)."""
    byp = 2 ** len(self.free_keep)
    total = 0
    for fidx in self._factor_combos():
      temporal = self._temporal_of(np.asarray(fidx))
      n = 1
      for l, free in enumerate(self.free_order):
        n *= math.factorial(sum(1 for d in free if temporal[l, d] > 1))
      total += n
    return total * byp

  # ---------------------------------------------------------------- decode
  def decode(self, g: Genome) -> Mapping:
    """Mapping batch (numpy; int32 factors and order, bool keep)."""
    s = self.structure
    L, D = s.num_levels, s.num_dims
    n = len(g)
    fac = np.empty((n, 3, L, D), FACTOR_DTYPE)
    for d, ds in enumerate(self.dims):
      fac[:, :, :, d] = ds.table[g.fidx[:, d]].reshape(n, 3, L)
    return Mapping(temporal=fac[:, TEMPORAL], spatial_x=fac[:, SPATIAL_X],
                   spatial_y=fac[:, SPATIAL_Y],
                   order=g.order.astype(np.int32), keep=g.keep.astype(bool))

  def _temporal_of(self, fidx: np.ndarray) -> np.ndarray:
    L = self.structure.num_levels
    return np.stack([ds.table[fidx[d], :L] for d, ds in enumerate(self.dims)],
                    axis=1)

  def encode(self, mapping: Mapping) -> Genome:
    """Genome of one mapping (numpy, no batch axis).

    Raises:
      SpecError: the mapping's factors are not in this mapspace.
    """
    s = self.structure
    L = s.num_levels
    fac = np.stack([np.asarray(mapping.temporal), np.asarray(mapping.spatial_x),
                    np.asarray(mapping.spatial_y)])            # [3, L, D]
    fidx = []
    for d, ds in enumerate(self.dims):
      row = fac[:, :, d].reshape(3 * L)
      hit = np.nonzero(np.all(ds.table == row, axis=1))[0]
      if not len(hit):
        raise SpecError(f"the factors of dim '{s.dim_names[d]}' are outside "
                        "the mapspace", path="mapping")
      fidx.append(hit[0])
    return Genome(np.asarray([fidx], np.int64),
                  np.asarray(mapping.order, np.int32)[None],
                  np.asarray(mapping.keep, bool)[None])

  # -------------------------------------------------------------- sampling
  def sample_genome(self, rng: np.random.Generator, n: int) -> Genome:
    """``n`` genomes uniform over the whole (encoded) mapspace."""
    s = self.structure
    L, D, S = s.num_levels, s.num_dims, s.num_dataspaces
    state = np.zeros(n, np.int64)
    fidx = np.empty((n, D), np.int64)
    for d, ds in enumerate(self.dims):
      cum = self._cum[d][state]                                # [n, G]
      u = rng.random(n)
      g = np.minimum((u[:, None] >= cum).sum(axis=1), cum.shape[1] - 1)
      cnt = ds.group_count[g]
      pick = np.minimum((rng.random(n) * cnt).astype(np.int64), cnt - 1)
      fidx[:, d] = ds.members[ds.offsets[g] + pick]
      state = self._trans[d][state, g]
    order = self._random_orders(rng, n)
    keep = np.broadcast_to(self.keep_rule == 1, (n, L, S)).copy()
    if len(self.free_keep):
      bits = rng.random((n, len(self.free_keep))) < 0.5
      keep[:, self.free_keep[:, 0], self.free_keep[:, 1]] = bits
    return Genome(fidx, order, keep)

  def sample(self, rng: np.random.Generator, n: int) -> Mapping:
    """``n`` mappings uniform over the encoded mapspace (numpy batch)."""
    return self.decode(self.sample_genome(rng, n))

  def _random_orders(self, rng, n) -> np.ndarray:
    s = self.structure
    L, D = s.num_levels, s.num_dims
    order = np.tile(np.arange(D, dtype=np.int32), (n, L, 1))
    for l in range(L):
      free = np.asarray(self.free_order[l], np.int32)
      pre = np.asarray(self.prefix[l], np.int32)
      if s.is_dummy[l]:
        continue
      order[:, l, :len(pre)] = pre
      if len(free):
        keys = rng.random((n, len(free)))
        order[:, l, len(pre):] = free[np.argsort(keys, axis=1)]
    return order

  # ----------------------------------------------------------- enumeration
  def _factor_combos(self) -> Iterator[tuple[int, ...]]:
    """Every tuple of per-dim rows whose spatial products fit."""
    D = len(self.dims)

    def rec(d, state, groups):
      if d == D:
        lists = [self.dims[k].members[self.dims[k].offsets[g]:
                                      self.dims[k].offsets[g + 1]]
                 for k, g in enumerate(groups)]
        yield from itertools.product(*lists)
        return
      t = self._trans[d][state]
      for g in np.nonzero(t >= 0)[0]:
        yield from rec(d + 1, t[g], groups + (int(g),))

    yield from rec(0, 0, ())

  def enumerate_genomes(self, chunk: int) -> Iterator[Genome]:
    """The whole mapspace in chunks of ``chunk`` (the last may be smaller).

    Loop orders that only differ in where unit loops go are merged: per
    level, the prefix comes first, then every order of the free loops with
    factor > 1, then the free unit loops by dim index.
    """
    s = self.structure
    L, D, S = s.num_levels, s.num_dims, s.num_dataspaces
    nk = len(self.free_keep)
    keeps = np.broadcast_to(self.keep_rule == 1, (2 ** nk, L, S)).copy()
    if nk:
      bits = (np.arange(2 ** nk)[:, None] >> np.arange(nk)[None, :]) & 1
      keeps[:, self.free_keep[:, 0], self.free_keep[:, 1]] = bits.astype(bool)
    buf: list[Genome] = []
    held = 0
    for fidx in self._factor_combos():
      fidx = np.asarray(fidx, np.int64)
      temporal = self._temporal_of(fidx)
      per_level = []
      for l in range(L):
        base = list(self.prefix[l])
        free = self.free_order[l]
        big = [d for d in free if temporal[l, d] > 1]
        unit = [d for d in free if temporal[l, d] <= 1]
        if s.is_dummy[l]:
          per_level.append([list(range(D))])
        else:
          per_level.append([base + list(p) + unit
                            for p in itertools.permutations(big)])
      orders = np.asarray([list(o) for o in itertools.product(*per_level)],
                          np.int32).reshape(-1, L, D)
      no, nb = len(orders), len(keeps)
      g = Genome(np.broadcast_to(fidx, (no * nb, D)).copy(),
                 np.repeat(orders, nb, axis=0),
                 np.tile(keeps, (no, 1, 1)))
      buf.append(g)
      held += len(g)
      while held >= chunk:
        allg = Genome.concat(buf)
        yield allg.take(slice(0, chunk))
        rest = allg.take(slice(chunk, None))
        buf, held = ([rest] if len(rest) else []), len(rest)
    if held:
      yield Genome.concat(buf)

  def enumerate_chunks(self, chunk: int) -> Iterator[Mapping]:
    """Exhaustive, streamed: Mapping batches of at most ``chunk``."""
    for g in self.enumerate_genomes(chunk):
      yield self.decode(g)

  # ------------------------------------------------------------ hashing
  def canonical_hash(self, g: Genome) -> np.ndarray:
    """``u64[B]`` hash that is equal for equivalent mappings.

    Unit loops are moved behind the others (by dim index) before hashing, so
    orders that only differ in where unit loops sit hash alike.
    """
    n = len(g)
    L = self.structure.num_levels
    D = self.structure.num_dims
    temporal = np.stack([ds.table[g.fidx[:, d], :L]
                         for d, ds in enumerate(self.dims)], axis=-1)
    t_in_order = np.take_along_axis(temporal, g.order.astype(np.int64), -1)
    pos = np.arange(D)[None, None, :]
    key = np.where(t_in_order > 1, pos, D + g.order)
    canon = np.take_along_axis(g.order, np.argsort(key, axis=-1), -1)
    cols = np.concatenate([g.fidx.reshape(n, -1),
                           canon.reshape(n, -1).astype(np.int64),
                           g.keep.reshape(n, -1).astype(np.int64)], axis=1)
    h = np.full(n, 0x243F6A8885A308D3, np.uint64)
    mul = np.uint64(0x9E3779B97F4A7C15)
    for c in cols.T.astype(np.uint64):
      h = (h ^ c) * mul
      h = h ^ (h >> np.uint64(29))
    return h

  def spatial_ok(self, g: Genome) -> np.ndarray:
    """``bool[B]``: spatial products within fan-outs."""
    n = len(g)
    prod = np.ones((n, len(self.caps)), np.int64)
    for d, ds in enumerate(self.dims):
      prod *= ds.table[g.fidx[:, d]][:, self.spatial_slots]
    return np.all(prod <= self.caps, axis=1)


def _dim_space(s: Structure, d: int, r: _DimRules, spatial_slots,
               caps) -> DimSpace:
  """All factorizations of dim ``d`` allowed by its rules."""
  L = s.num_levels
  K = 3 * L
  bound = s.dim_bounds[d]
  name = s.dim_names[d]
  allowed = r.allowed.copy()
  fixed = dict(r.fixed)
  for l, v in r.spatial_fixed.items():
    xs, ys = SPATIAL_X * L + l, SPATIAL_Y * L + l
    if v == 1 or not (allowed[xs] or allowed[ys]):
      fixed[xs] = fixed[ys] = 1
      if v != 1:
        raise SpecError(f"spatial factor {name}={v} at '{s.level_names[l]}' "
                        "which has no fan-out for it", path="constraints")
    elif not allowed[ys]:
      fixed[xs], fixed[ys] = v, 1
    elif not allowed[xs]:
      fixed[xs], fixed[ys] = 1, v
  for k in range(K):
    if not allowed[k] and k not in fixed:
      fixed[k] = 1
  fixed_prod = math.prod(fixed.values())
  if bound % fixed_prod:
    raise SpecError(
        f"fixed factors of dim '{name}' multiply to {fixed_prod}, which does "
        f"not divide its bound {bound}", path="constraints",
        hint="Only perfect factorizations are supported.")
  free = [k for k in range(K) if k not in fixed]
  rows = np.ones((1, K), np.int64)
  for k, v in fixed.items():
    rows[:, k] = v
  cap = np.full(K, np.iinfo(np.int64).max, np.int64)
  for l in range(L):
    cap[SPATIAL_X * L + l] = max(s.fanout_x[l], 1)
    cap[SPATIAL_Y * L + l] = max(s.fanout_y[l], 1)
  for k, v in r.upper.items():
    cap[k] = min(cap[k], v)
  for l, v in r.spatial_upper.items():
    cap[SPATIAL_X * L + l] = min(cap[SPATIAL_X * L + l], v)
    cap[SPATIAL_Y * L + l] = min(cap[SPATIAL_Y * L + l], v)
  rem = bound // fixed_prod
  for p, e in prime_factors(rem).items():
    if not free:
      rows = rows[:0]
      break
    comp = p ** _compositions(e, len(free))                  # [C, F]
    new = np.repeat(rows, len(comp), axis=0)
    new[:, free] *= np.tile(comp, (len(rows), 1))
    rows = new[np.all(new <= cap, axis=1)]
    if len(rows) > _MAX_ROWS:
      raise SpecError(f"dim '{name}' has more than {_MAX_ROWS} "
                      "factorizations; constrain the mapspace further",
                      path="constraints")
  ok = np.ones(len(rows), bool)
  for k, v in r.lower.items():
    ok &= rows[:, k] >= v
  for l in range(L):
    x, y = rows[:, SPATIAL_X * L + l], rows[:, SPATIAL_Y * L + l]
    ok &= (x == 1) | (y == 1)
    if l in r.spatial_fixed:
      ok &= x * y == r.spatial_fixed[l]
    if l in r.spatial_lower:
      ok &= x * y >= r.spatial_lower[l]
  rows = rows[ok]
  if not len(rows):
    raise SpecError(f"the constraints leave no factorization of dim '{name}' "
                    f"(bound {bound})", path="constraints")
  svec = rows[:, spatial_slots] if len(spatial_slots) else np.ones(
      (len(rows), 0), np.int64)
  if svec.shape[1]:
    group_vec, group = np.unique(svec, axis=0, return_inverse=True)
    group = group.reshape(-1)
  else:
    group_vec, group = np.ones((1, 0), np.int64), np.zeros(len(rows), np.int64)
  members = np.argsort(group, kind="stable")
  offsets = np.concatenate([[0], np.cumsum(np.bincount(
      group, minlength=len(group_vec)))]).astype(np.int64)
  ds = DimSpace(rows, tuple(free), group.astype(np.int64), group_vec, members,
                offsets)
  ds.neighbors = _neighbors(rows, tuple(free), prime_factors(bound))
  return ds


def _neighbors(rows: np.ndarray, free, primes) -> np.ndarray:
  """``[N, M]`` rows reachable by moving one prime between free slots."""
  n = len(rows)
  if n <= 1 or len(free) < 2:
    return np.full((n, 1), -1, np.int64)
  key_of = {r.tobytes(): i for i, r in enumerate(rows)}
  out = [[] for _ in range(n)]
  for p in primes:
    for a in free:
      src = np.nonzero(rows[:, a] % p == 0)[0]
      if not len(src):
        continue
      for b in free:
        if a == b:
          continue
        moved = rows[src].copy()
        moved[:, a] //= p
        moved[:, b] *= p
        for i, m in zip(src, moved):
          j = key_of.get(m.tobytes())
          if j is not None:
            out[i].append(j)
  width = max(1, max(len(o) for o in out))
  nb = np.full((n, width), -1, np.int64)
  for i, o in enumerate(out):
    nb[i, :len(o)] = o
  return nb
