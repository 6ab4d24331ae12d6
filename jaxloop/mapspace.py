"""The mapspace: every mapping the constraints allow.

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

The tables are built in numpy.  Sampling has one implementation, in
``jax.numpy`` (:meth:`Mapspace.draw_blocks`, traceable, so a stream draws
inside its compiled step); :meth:`Mapspace.sample` and
:meth:`Mapspace.sample_genome` are its numpy front ends.
"""
from __future__ import annotations

import dataclasses
import functools
import itertools
import math
from typing import Iterator, NamedTuple, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxloop.errors import SpecError
from jaxloop.model import blocks
from jaxloop.precision import exact, require_x64
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


@dataclasses.dataclass
class _Rules:
  """What the constraint directives allow, before any table is built.

  Attributes:
    dims: ``[D]`` factor rules of each dim.
    prefix: ``[L]`` fixed innermost loop dims of each level (Timeloop's
      ``permutation`` constraint, innermost first).
    keep_rule: ``i8[L, S]``: 1 keep, 0 bypass, -1 free.
    ignored: descriptions of the constraints that are not honoured.
  """
  dims: list
  prefix: list
  keep_rule: np.ndarray
  ignored: list


def _open_rules(s: Structure) -> _Rules:
  """No constraints: every dim may use each level's temporal slot (storage
  levels) and its spatial X/Y slots (levels that fan out)."""
  L = s.num_levels
  allowed = np.zeros(3 * L, bool)
  for l in range(L):
    allowed[TEMPORAL * L + l] = not s.is_dummy[l]
    allowed[SPATIAL_X * L + l] = s.fanout_x[l] > 1
    allowed[SPATIAL_Y * L + l] = s.fanout_y[l] > 1
  dims = [_DimRules(allowed.copy(), {}, {}, {}, {}, {}, {})
          for _ in range(s.num_dims)]
  return _Rules(dims, [() for _ in range(L)],
                np.full((L, s.num_dataspaces), -1, np.int8), [])


def _dim_index(s: Structure, name: str, where: str, path: str) -> int:
  """Index of problem dim ``name``; a SpecError naming the dims if unknown.
  """
  if name not in s.dim_names:
    raise SpecError(f"unknown dim '{name}'", path=path, where=where,
                    hint="Problem dims: " + ", ".join(s.dim_names))
  return s.dim_names.index(name)


def _read_temporal(s: Structure, rules: _Rules, c: st.Directive, l: int,
                   path: str) -> None:
  """A ``temporal`` directive at level l: fixed factors (0 = free), factor
  bounds and the loop-order prefix (a full permutation when it names all
  dims but one)."""
  L, D = s.num_levels, s.num_dims
  for name, v in c.factors or ():
    if int(v) > 0:
      d = _dim_index(s, name, c.where, path + ".factors")
      if s.is_dummy[l] and int(v) != 1:
        raise SpecError(
            f"temporal factor {name}={v} at storage-less level "
            f"'{c.target}'", path=path + ".factors", where=c.where)
      rules.dims[d].fixed[TEMPORAL * L + l] = int(v)
  for name, op, v in c.factor_bounds:
    d = _dim_index(s, name, c.where, path + ".factors")
    tab = rules.dims[d].upper if op == "<=" else rules.dims[d].lower
    tab[TEMPORAL * L + l] = int(v)
  if c.permutation is not None and not s.is_dummy[l]:
    perm = []
    for name in c.permutation:
      d = _dim_index(s, name, c.where, path + ".permutation")
      if d not in perm:
        perm.append(d)
    if len(perm) >= D - 1:
      perm = perm + [d for d in range(D) if d not in perm]
    rules.prefix[l] = tuple(perm)


def _read_spatial(s: Structure, rules: _Rules, c: st.Directive, l: int,
                  path: str) -> None:
  """A ``spatial`` directive at level l: fixed X*Y factors, their bounds,
  and the X/Y split (dims before ``split`` go to Y only, after it to X
  only)."""
  L = s.num_levels
  for name, v in c.factors or ():
    if int(v) > 0:
      d = _dim_index(s, name, c.where, path + ".factors")
      rules.dims[d].spatial_fixed[l] = int(v)
  for name, op, v in c.factor_bounds:
    d = _dim_index(s, name, c.where, path + ".factors")
    r = rules.dims[d]
    (r.spatial_upper if op == "<=" else r.spatial_lower)[l] = int(v)
  if c.split is not None and c.permutation is not None:
    for pos, name in enumerate(c.permutation):
      d = _dim_index(s, name, c.where, path + ".permutation")
      off = SPATIAL_Y if pos < c.split else SPATIAL_X
      rules.dims[d].allowed[off * L + l] = False


def _read_bypass(s: Structure, rules: _Rules, c: st.Directive, l: int,
                 path: str) -> None:
  """A ``bypass`` directive at level l: data spaces kept or bypassed."""
  for names, value in ((c.keep, 1), (c.bypass, 0)):
    for name in names or ():
      rules.keep_rule[l, s.dataspace_index(name, path, c.where)] = value


_READERS = {"temporal": _read_temporal, "spatial": _read_spatial,
            "bypass": _read_bypass}


def _read_constraints(s: Structure,
                      directives: Sequence[st.Directive]) -> _Rules:
  """The rules of ``directives`` (Timeloop's mapspace constraints).

  Storage-less levels keep nothing and the outermost level keeps
  everything, whatever the directives say.  Other directive types and
  ``no_multicast`` are listed in ``ignored``.

  Raises:
    SpecError: an unknown target level, dim or data space.
  """
  rules = _open_rules(s)
  for k, c in enumerate(directives):
    path = f"constraints[{k}]"
    if c.target not in s.level_names:
      raise SpecError(f"constraint target '{c.target}' is not a storage "
                      "level", path=path + ".target", where=c.where,
                      hint="Levels: " + ", ".join(reversed(s.level_names)))
    read = _READERS.get(c.type)
    if read is None:
      rules.ignored.append(f"{c.type} constraint on {c.target} ({c.where})")
    else:
      read(s, rules, c, s.level_index(c.target), path)
    if c.no_multicast:
      rules.ignored.append(f"no_multicast on {c.target} ({c.where})")
  rules.keep_rule[np.asarray(s.is_dummy, bool)] = 0
  rules.keep_rule[s.num_levels - 1] = 1
  return rules


def _spatial_slots(s: Structure) -> tuple[list[int], list[int]]:
  """``(slots, caps)``: the spatial slots that fan out (``kind * L + l``),
  and each one's fan-out."""
  L = s.num_levels
  slots, caps = [], []
  for l in range(L):
    for kind, fan in ((SPATIAL_X, s.fanout_x[l]), (SPATIAL_Y, s.fanout_y[l])):
      if fan > 1:
        slots.append(kind * L + l)
        caps.append(fan)
  return slots, caps


class Mapspace:
  """Constrained mapspace of one (architecture, problem) pair.

  Build with :meth:`from_spec`.  The tables are numpy; :meth:`draw` and
  :meth:`draw_blocks` sample in ``jax.numpy`` (traceable), :meth:`sample`
  and :meth:`sample_genome` return numpy.

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
    rules = _read_constraints(
        s, spec.constraints if constraints is None else constraints)
    spatial_slots, caps = _spatial_slots(s)
    dims = [_dim_space(s, d, rules.dims[d], spatial_slots, caps)
            for d in range(s.num_dims)]
    return cls(s, dims, tuple(rules.prefix), rules.keep_rule, spatial_slots,
               caps, rules.ignored)

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
  @exact
  def sample_genome(self, rng: np.random.Generator, n: int) -> Genome:
    """``n`` genomes uniform over the whole (encoded) mapspace (numpy).

    The draw of :meth:`draw_blocks` (compiled once per power-of-two batch
    size, or once for :attr:`draw_lanes`), keyed by two words of ``rng``:
    the same generator state gives the same genomes, and ``rng`` moves on.
    """
    n = int(n)
    key = rng.integers(0, 2**32, size=2, dtype=np.uint32)
    lanes = max(64, self.draw_lanes or 0, _next_pow2(n))
    fidx, order, keep = self._genome_program(lanes)(key)
    return Genome(np.asarray(fidx)[:n], np.asarray(order)[:n],
                  np.asarray(keep)[:n])

  def sample(self, rng: np.random.Generator, n: int) -> Mapping:
    """``n`` mappings uniform over the encoded mapspace (numpy batch)."""
    return self.decode(self.sample_genome(rng, n))

  def draw(self, key: jax.Array, n: int) -> Mapping:
    """``n`` mappings uniform over the encoded mapspace, batch-first
    (``[n, L, D]``/``[n, L, S]`` jax arrays); traceable, 64-bit types on.

    Row b is lane ``b % C`` of block ``b // C`` of
    ``draw_blocks(key, n // C, C)`` for any C dividing n.
    """
    return blocks.from_blocks(self.draw_blocks(key, 1, n))

  def draw_blocks(self, key: jax.Array, num_blocks: int,
                  lanes: int) -> Mapping:
    """``num_blocks * lanes`` uniform mappings in the blocked layout
    (:mod:`jaxloop.model.blocks`: ``[nb, L, D, C]``/``[nb, L, S, C]``);
    traceable, 64-bit types on.

    Every field is drawn in place in its blocked layout (no transposes).
    The random streams are ``[nb * C]`` long, reshaped to ``[nb, C]``: the
    mappings depend on ``key``, ``nb * C`` and their row, not on the block
    shape.
    """
    require_x64("Mapspace.draw_blocks")
    fidx, order, keep = self._draw_genome(key, (int(num_blocks), int(lanes)))
    temporal, spatial_x, spatial_y = self._factor_fields(fidx)
    return Mapping(temporal=temporal, spatial_x=spatial_x,
                   spatial_y=spatial_y, order=order, keep=keep)

  def _genome_program(self, lanes: int):
    """``key -> (fidx [C, D], order [C, L, D], keep [C, L, S])``: one block
    of ``lanes`` genomes, batch-first.  The jitted draw is shared by every
    mapspace of one :class:`DrawLayout` (the tables are its data), so the
    mapspaces of a layer kind compile it once."""
    programs = self.__dict__.setdefault("_genome_programs", {})
    if lanes not in programs:
      program = _shared_genome_program(self.draw_layout, lanes)
      programs[lanes] = functools.partial(program, self._padded_draw_tables)
    return programs[lanes]

  def _draw_genome(self, key: jax.Array, shape: tuple[int, int]) -> tuple:
    """Uniform genomes for a block batch ``shape = (nb, C)``
    (:func:`_draw_genome`; the tables as constants of a trace)."""
    return _draw_genome(self.draw_layout, self._padded_draw_tables, key,
                        shape)

  # Table shapes the draw pads to (``[D]`` triples ``(states, groups,
  # rows)``), or None: each rounded up to a power of two.  Mapspaces of one
  # layer kind padded to their largest shapes share one draw program.
  draw_padding: Optional[tuple] = None
  # The smallest batch :meth:`sample_genome` draws (then keeps the first n
  # rows), or None (the next power of two): set, every request up to it
  # runs one compiled draw.
  draw_lanes: Optional[int] = None

  @property
  def draw_layout(self) -> "DrawLayout":
    """What the compiled draw depends on (hashable): the static rules and
    the padded table shapes."""
    s = self.structure
    return DrawLayout(
        is_dummy=tuple(bool(x) for x in s.is_dummy),
        num_dataspaces=s.num_dataspaces, prefix=tuple(self.prefix),
        free_order=self.free_order,
        free_keep=tuple((int(l), int(d)) for l, d in self.free_keep),
        keep_rule=tuple(tuple(int(x) for x in row) for row in
                        self.keep_rule),
        table_shapes=self.draw_padding or tuple(
            tuple(_next_pow2(n) for n in shape)
            for shape in self.draw_table_shapes()))

  def draw_table_shapes(self) -> tuple:
    """``[D]`` ``(states, groups, rows)`` of the draw's tables, unpadded."""
    return tuple((int(cum.shape[0]), int(cum.shape[1]), int(len(ds.members)))
                 for cum, ds in zip(self._cum, self.dims))

  @property
  def _padded_draw_tables(self) -> list[tuple]:
    """:attr:`_draw_tables` padded to ``draw_layout.table_shapes`` without
    changing any draw: padded groups have cumulative probability 2 (never
    drawn) and each state's last real group is given cumulative
    probability 1 (the draw clamps to it anyway)."""
    key = self.draw_layout.table_shapes
    cache = self.__dict__.setdefault("_padded_tables", {})
    if key not in cache:
      cache[key] = [_pad_tables(t, shape)
                    for t, shape in zip(self._draw_tables, key)]
    return cache[key]

  @functools.cached_property
  def _draw_tables(self) -> list[tuple]:
    """Per dim, the dynamic program's tables (numpy): ``(cum [Ns, G]`` each
    group's cumulative probability per spatial-product state, ``trans
    [Ns, G]`` the next state, ``count [G]`` rows per group, ``members
    [N]``, ``offsets [G + 1])`` (see :class:`DimSpace`)."""
    return [(np.asarray(cum, np.float64), np.asarray(trans, np.int64),
             np.asarray(ds.group_count, np.int64),
             np.asarray(ds.members, np.int64),
             np.asarray(ds.offsets, np.int64))
            for cum, trans, ds in zip(self._cum, self._trans, self.dims)]

  def _factor_fields(self, fidx: jax.Array) -> tuple:
    """``(temporal, spatial_x, spatial_y)``, each ``[nb, L, D, C]``, of the
    factorization rows ``fidx [nb, D, C]``.

    Only the (field, level) columns that vary in some dim's table are
    gathered (one gather per field from all tables in one flat array); the
    others (storage-less levels' temporal factors, spatial factors of
    levels without fan-out) are constants.
    """
    flat, first, per_field = self._factor_columns
    row = fidx * (3 * self.structure.num_levels) + jnp.asarray(first)[
        None, :, None]                                         # [nb, D, C]
    flat = jnp.asarray(flat)
    level_shape = (row.shape[0], 1) + row.shape[1:]           # [nb, 1, D, C]
    fields = []
    for slots, position, constant in per_field:
      if len(slots):
        got = flat[row[:, None] + slots[None, :, None, None]]  # [nb,V,D,C]
      fields.append(jnp.concatenate(
          [got[:, k:k + 1] if k >= 0 else jnp.broadcast_to(
              jnp.asarray(c)[None, None, :, None], level_shape)
           for k, c in zip(position, constant)], axis=1))
    return tuple(fields)

  @functools.cached_property
  def _factor_columns(self) -> tuple:
    """What :meth:`_factor_fields` reads (numpy).

    Returns:
      ``(flat, first, per_field)``: all dims' tables ``[N_d, 3L]``
      flattened (``FACTOR_DTYPE``), ``first [D]`` the offset of dim d's
      table in ``flat``, and per field (temporal, X, Y) ``(slots [V]`` the
      varying slots, ``position [L]`` level l's index among them or -1,
      ``constant [L]`` level l's factors ``[D]`` where it does not vary).
    """
    L = self.structure.num_levels
    tables = [ds.table for ds in self.dims]
    flat = np.concatenate([t.reshape(-1) for t in tables]).astype(FACTOR_DTYPE)
    first = np.cumsum([0] + [t.size for t in tables[:-1]])
    varies = np.stack([t.min(axis=0) != t.max(axis=0) for t in tables]).any(0)
    per_field = []
    for f in (TEMPORAL, SPATIAL_X, SPATIAL_Y):
      levels = np.nonzero(varies[f * L:(f + 1) * L])[0]
      position = [int(np.searchsorted(levels, l)) if l in levels else -1
                  for l in range(L)]
      constant = [np.asarray([t[0, f * L + l] for t in tables], FACTOR_DTYPE)
                  for l in range(L)]
      per_field.append((levels + f * L, position, constant))
    return flat, first, per_field

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
  """All factorizations of dim ``d`` allowed by its rules, grouped by their
  factors at the spatial slots (the dynamic program's per-dim choices).

  Raises:
    SpecError: the rules leave no factorization, or too many.
  """
  name, bound = s.dim_names[d], s.dim_bounds[d]
  fixed = _fixed_slots(s, d, r)
  rows = _factorizations(bound, fixed, _slot_caps(s, r), name)
  rows = rows[_meets_spatial_rules(s, r, rows)]
  if not len(rows):
    raise SpecError(f"the constraints leave no factorization of dim '{name}' "
                    f"(bound {bound})", path="constraints")
  free = tuple(k for k in range(3 * s.num_levels) if k not in fixed)
  group, group_vec, members, offsets = _spatial_groups(rows, spatial_slots)
  return DimSpace(rows, free, group, group_vec, members, offsets,
                  neighbors=_neighbors(rows, free, prime_factors(bound)))


def _fixed_slots(s: Structure, d: int, r: _DimRules) -> dict[int, int]:
  """``{slot: factor}`` of the slots whose factor is decided: the fixed
  temporal factors, fixed spatial factors (X*Y) put on the one axis that
  may hold them, and 1 at every slot the dim may not use.

  Raises:
    SpecError: a fixed spatial factor > 1 at a level with no fan-out for it.
  """
  L = s.num_levels
  fixed = dict(r.fixed)
  for l, v in r.spatial_fixed.items():
    xs, ys = SPATIAL_X * L + l, SPATIAL_Y * L + l
    if v == 1 or not (r.allowed[xs] or r.allowed[ys]):
      fixed[xs] = fixed[ys] = 1
      if v != 1:
        raise SpecError(f"spatial factor {s.dim_names[d]}={v} at "
                        f"'{s.level_names[l]}' which has no fan-out for it",
                        path="constraints")
    elif not r.allowed[ys]:
      fixed[xs], fixed[ys] = v, 1
    elif not r.allowed[xs]:
      fixed[xs], fixed[ys] = 1, v
  for k in range(3 * L):
    if not r.allowed[k] and k not in fixed:
      fixed[k] = 1
  return fixed


def _slot_caps(s: Structure, r: _DimRules) -> np.ndarray:
  """``i64[3L]`` largest factor of each slot: the fan-out for spatial
  slots, tightened by ``<=`` bounds (unbounded temporal slots: int64 max).
  """
  L = s.num_levels
  cap = np.full(3 * L, np.iinfo(np.int64).max, np.int64)
  cap[SPATIAL_X * L:SPATIAL_X * L + L] = np.maximum(s.fanout_x, 1)
  cap[SPATIAL_Y * L:SPATIAL_Y * L + L] = np.maximum(s.fanout_y, 1)
  for k, v in r.upper.items():
    cap[k] = min(cap[k], v)
  for l, v in r.spatial_upper.items():
    for kind in (SPATIAL_X, SPATIAL_Y):
      cap[kind * L + l] = min(cap[kind * L + l], v)
  return cap


def _factorizations(bound: int, fixed: dict[int, int], cap: np.ndarray,
                    name: str) -> np.ndarray:
  """``i64[N, K]``: every perfect factorization of ``bound`` over K slots
  with the ``fixed`` slots set and each slot within ``cap``.

  The prime exponents of ``bound / prod(fixed)`` are dealt out over the
  free slots (all compositions), one prime at a time, dropping rows over a
  cap as they appear.

  Raises:
    SpecError: the fixed factors do not divide ``bound``, or more than
      ``_MAX_ROWS`` rows.
  """
  K = len(cap)
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
  for p, e in prime_factors(bound // fixed_prod).items():
    if not free:
      return rows[:0]
    comp = p ** _compositions(e, len(free))                  # [C, F]
    new = np.repeat(rows, len(comp), axis=0)
    new[:, free] *= np.tile(comp, (len(rows), 1))
    rows = new[np.all(new <= cap, axis=1)]
    if len(rows) > _MAX_ROWS:
      raise SpecError(f"dim '{name}' has more than {_MAX_ROWS} "
                      "factorizations; constrain the mapspace further",
                      path="constraints")
  return rows


def _meets_spatial_rules(s: Structure, r: _DimRules,
                         rows: np.ndarray) -> np.ndarray:
  """``bool[N]``: rows within the ``>=`` bounds, using X or Y (not both)
  at each level, and with the fixed and bounded X*Y spatial factors."""
  L = s.num_levels
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
  return ok


def _spatial_groups(rows: np.ndarray, spatial_slots) -> tuple:
  """Rows grouped by their factors at the fanned-out spatial slots.

  Returns:
    ``(group [N], group_vec [G, P], members [N], offsets [G + 1])``: each
    row's group, each group's spatial factors, and the rows sorted by group
    (group g is ``members[offsets[g]:offsets[g + 1]]``).
  """
  if len(spatial_slots):
    group_vec, group = np.unique(rows[:, spatial_slots], axis=0,
                                 return_inverse=True)
    group = group.reshape(-1)
  else:
    group_vec, group = np.ones((1, 0), np.int64), np.zeros(len(rows), np.int64)
  members = np.argsort(group, kind="stable")
  offsets = np.concatenate([[0], np.cumsum(np.bincount(
      group, minlength=len(group_vec)))]).astype(np.int64)
  return group.astype(np.int64), group_vec, members, offsets


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


class DrawLayout(NamedTuple):
  """The static part of a mapspace's draw (hashable; the jit key).

  Attributes:
    is_dummy: ``[L]`` storage-less levels.
    num_dataspaces: S.
    prefix, free_order: ``[L]`` fixed and free loop dims of each level.
    free_keep: ``[F]`` ``(level, data space)`` pairs with a free keep bit.
    keep_rule: ``[L][S]`` 1 keep, 0 bypass, -1 free.
    table_shapes: ``[D]`` ``(states, groups, rows)`` of the padded tables.
  """
  is_dummy: tuple
  num_dataspaces: int
  prefix: tuple
  free_order: tuple
  free_keep: tuple
  keep_rule: tuple
  table_shapes: tuple


@functools.lru_cache(maxsize=64)
def _shared_genome_program(layout: DrawLayout, lanes: int):
  """Jitted ``(tables, key) -> (fidx [C, D], order [C, L, D], keep [C, L,
  S])`` for every mapspace of ``layout``."""
  def jaxloop_draw(tables, key):
    return blocks.from_blocks(_draw_genome(layout, tables, key, (1, lanes)))
  return jax.jit(jaxloop_draw)


def _pad_tables(tables: tuple, shape: tuple) -> tuple:
  """One dim's draw tables padded to ``shape = (states, groups, rows)``
  (see :attr:`Mapspace._padded_draw_tables`)."""
  cum, trans, count, members, offsets = tables
  ns, g = cum.shape
  states, groups, rows = shape
  if ns > states or g > groups or len(members) > rows:
    raise ValueError(f"draw tables {(ns, g, len(members))} exceed the "
                     f"padding {shape}")
  c = np.full((states, groups), 2.0)
  c[:ns, :g] = cum
  c[:ns, g - 1] = 1.0
  t = np.zeros((states, groups), np.int64)
  t[:ns, :g] = trans
  n = np.ones(groups, np.int64)
  n[:g] = count
  m = np.zeros(rows, np.int64)
  m[:len(members)] = members
  o = np.full(groups + 1, offsets[-1], np.int64)
  o[:g + 1] = offsets
  return c, t, n, m, o


def _draw_genome(layout: DrawLayout, tables, key: jax.Array,
                 shape: tuple[int, int]) -> tuple:
  """Uniform genomes for a block batch ``shape = (nb, C)``.

  One uniform stream per random choice of a mapping (``[U, nb * C]``,
  reshaped to ``[U, nb, C]``: every choice is already in the blocked
  layout): two per dim for the factorization, one per free loop of each
  level for its order, one per free keep bit.

  Returns:
    ``(fidx i64[nb, D, C], order i32[nb, L, D, C], keep bool[nb, L, S, C])``.
  """
  D, F = len(layout.table_shapes), len(layout.free_keep)
  free_loops = sum(len(free) for l, free in enumerate(layout.free_order)
                   if not layout.is_dummy[l])
  u = jax.random.uniform(key, (2 * D + free_loops + F,
                               shape[0] * shape[1]), jnp.float64)
  u = u.reshape((-1,) + shape)
  return (_draw_factorizations(tables, u[:2 * D]),
          _draw_orders(layout, u[2 * D:u.shape[0] - F]),
          _draw_keep(layout, u[u.shape[0] - F:]))


def _draw_factorizations(tables, u: jax.Array) -> jax.Array:
  """``i64[nb, D, C]`` row of each dim's factorization table, uniform over
  the combinations whose spatial products fit the fan-outs.

  Dim by dim: the group of spatial factors (weighted by the number of
  completions the dynamic program counted from the current spatial
  products; uniform ``u[2d]``), then a row of that group, uniformly
  (``u[2d + 1]``); then the spatial products move on.

  Args:
    tables: per dim ``(cum, trans, count, members, offsets)``.
    u: ``f64[2D, nb, C]`` uniforms in [0, 1).
  """
  state = jnp.zeros(u.shape[1:], jnp.int64)
  picks = []
  for d, dim_tables in enumerate(tables):
    cum, trans, count, members, offsets = map(jnp.asarray, dim_tables)
    c = cum[state]                                             # [nb, C, G]
    g = jnp.minimum(jnp.sum(u[2 * d][..., None] >= c, axis=-1),
                    c.shape[-1] - 1)
    size = count[g]
    pick = jnp.minimum((u[2 * d + 1] * size).astype(jnp.int64), size - 1)
    picks.append(members[offsets[g] + pick])
    state = trans[state, g]
  return jnp.stack(picks, axis=1)


def _draw_orders(layout: DrawLayout, u: jax.Array) -> jax.Array:
  """``i32[nb, L, D, C]`` loop orders: per level the fixed prefix, then its
  free dims in uniformly random order (storage-less levels: dim order).

  Args:
    u: ``f64[O, nb, C]`` uniforms, one per free loop (levels in order).
  """
  _, nb, lanes = u.shape
  L, D = len(layout.is_dummy), len(layout.table_shapes)
  levels, used = [], 0
  for l in range(L):
    pre = np.asarray(layout.prefix[l], np.int32)
    free = np.asarray(layout.free_order[l], np.int32)
    if layout.is_dummy[l] or not len(free):
      fixed = np.arange(D) if layout.is_dummy[l] else pre
      levels.append(jnp.broadcast_to(
          jnp.asarray(fixed, jnp.int32)[:, None], (nb, D, lanes)))
      continue
    shuffled = _sort_by_keys(u[used:used + len(free)], free)    # [k, nb, C]
    used += len(free)
    levels.append(jnp.concatenate(
        [jnp.broadcast_to(jnp.asarray(pre)[:, None], (nb, len(pre), lanes)),
         jnp.moveaxis(shuffled, 0, 1)], axis=1))
  return jnp.stack(levels, axis=1).astype(jnp.int32)


def _draw_keep(layout: DrawLayout, u: jax.Array) -> jax.Array:
  """``bool[nb, L, S, C]``: the fixed keep/bypass bits, and a fair coin
  (``u[f] < 0.5``) for each free one.

  Args:
    u: ``f64[F, nb, C]`` uniforms, one per free bit (``free_keep`` order).
  """
  _, nb, lanes = u.shape
  L, S = len(layout.is_dummy), layout.num_dataspaces
  coin = {(l, s): f for f, (l, s) in enumerate(layout.free_keep)}
  planes = [u[coin[l, s]] < 0.5 if (l, s) in coin
            else jnp.full((nb, lanes), layout.keep_rule[l][s] == 1)
            for l in range(L) for s in range(S)]
  return jnp.stack(planes, axis=1).reshape(nb, L, S, lanes)


def _next_pow2(n: int) -> int:
  """Smallest power of two >= n (1 for n <= 1)."""
  return 1 << max(0, int(n) - 1).bit_length()


def _sort_by_keys(keys: jax.Array, values: np.ndarray) -> jax.Array:
  """``values[argsort(keys)]`` per mapping, ``[k, *batch]`` (stable, k
  small).

  Built from pairwise comparisons: value a lands at its rank, the number
  of keys before it (ties broken by position, as a stable sort does).
  ``k**2`` elementwise ops per mapping instead of a comparison sort per
  mapping, XLA:CPU's slowest kernel in a draw.
  """
  k = keys.shape[0]
  pos = np.arange(k)
  extra = (None,) * (keys.ndim - 1)
  before = ((keys[None] < keys[:, None])
            | ((keys[None] == keys[:, None])
               & (pos[None, :] < pos[:, None])[(...,) + extra]))  # [a, b, ...]
  rank = jnp.sum(before, axis=1, dtype=jnp.int32)                  # [a, ...]
  slots = np.arange(k, dtype=np.int32)
  values = np.asarray(values, np.int32)
  return jnp.sum(jnp.where(rank[:, None] == slots[(None, slice(None)) + extra],
                           values[(slice(None), None) + extra], 0),
                 axis=0, dtype=jnp.int32)                          # [k, ...]
