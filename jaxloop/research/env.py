"""A jittable mapping environment in the functional style of gymnax.

An episode builds one mapping of a workload's constrained mapspace
(:mod:`jaxloop.mapspace`) decision by decision, and its reward is the exact
model's objective (:mod:`jaxloop.model`) of the finished mapping:

1. keep phase: one step per free keep/bypass bit ``(level, data space)``
   (Timeloop's bypass; action 0 bypass, 1 keep);
2. factor phase: one step per problem dim, in dim order: the action picks a
   row of the dim's factorization table (``Mapspace.dims[d].table``: the
   dim's whole split over every level's temporal, spatial X and spatial Y
   slot, Timeloop's index factorization under the constraints);
3. order phase: per storage level with free loops, one step per loop
   position after the constraint's fixed prefix (innermost first): the
   action is the dim whose loop goes there (Timeloop's permutation).

Action masks (``obs["mask"]``, ``bool[A]``) keep every terminal state a
legal mapping:

* membership of the constrained mapspace: a factor row is allowed when the
  mapspace's dynamic program over spatial products (the fan-out limits)
  still has a completion after it (``Mapspace._trans``/``_counts``), so
  fixed factors, bounds, splits, permutation prefixes and fixed keep bits
  hold by construction;
* capacity: a row (or a keep bit) is allowed when the kept tiles fit every
  level with the undecided dims at their smallest tiles (``floor``: the
  elementwise minimum of each dim's cumulative extents over its rows).
  Tiles only grow with factors, so the mask never rules out a legal
  completion; when each dim's floor is one of its rows and the floors
  together fit (checked when the environment is built, ``capacity_exact``),
  it never leaves a dead end either, and every terminal mapping passes
  ``jaxloop.validity``.  Otherwise a step with no capacity-feasible choice
  falls back to the mapspace mask (the mapping is then legal in the
  mapspace but may overflow; ``info["valid"]`` says so).  Timeloop's
  ``min_utilization`` lower bound is not masked (the reference
  architectures use 0).

Functional interface (pure, vmappable; ``jax.jit(jax.vmap(env.step))``)::

    env = MappingEnv(workload)            # static layout (hashable)
    params = env.default_params           # EnvParams: data
    obs, state = env.reset(key, params)
    obs, state, reward, done, info = env.step(key, state, action, params)

The static layout (``env.layout``) is the workload's
:class:`~jaxloop.structure.Structure` plus the step plan: one compiled
program per layout.  ``EnvParams`` carry the architecture numbers
(``ArchParams``: energies, capacities, bandwidths), the problem's bounds
and the mapspace tables as padded arrays, so a sweep over architecture
numbers reuses the program, and so do the layers of one layer kind
(:mod:`jaxloop.network.kinds`): :meth:`MappingEnv.family` builds their
environments on the kind's structure with tables padded to one shape, and
the compiled programs are cached by layout (:func:`compiled_programs`
counts their compilations).  A
finished episode stays finished: further steps change nothing and give
reward 0.  The reward is 0 until the last step, then ``-log(objective)``
(``objective``: ``edp`` in J*cycles, ``energy`` in pJ or ``delay`` in
cycles); a mapping the exact model reports invalid gets
``-log(objective) - INVALID_PENALTY``.

The traced functions need 64-bit types (as the model does,
:mod:`jaxloop.precision`): call them inside ``with jax.enable_x64(True):``.
The one-shot interface :meth:`MappingEnv.one_shot` (a whole mapping in,
its exact reward out) serves bandit-style methods.
"""
from __future__ import annotations

import dataclasses
import functools
import weakref
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np

from jaxloop import model
from jaxloop.errors import SpecError
from jaxloop.mapspace import Genome, Mapspace
from jaxloop.model import tiling
from jaxloop.precision import exact, require_x64
from jaxloop.structure import Structure
from jaxloop.types import FACTOR_DTYPE, ArchParams, Mapping, Stats

KEEP, FACTOR, ORDER, DONE = 0, 1, 2, 3
INVALID_PENALTY = 10.0
OBJECTIVES = ("edp", "energy", "delay")


@dataclasses.dataclass(frozen=True)
class EnvLayout:
  """The static plan of an episode (hashable).

  Attributes:
    structure: the workload's static structure.
    num_rows: ``N``, rows of the largest factorization table (tables are
      padded to it).
    keep_steps: ``[K]`` free ``(level, data space)`` keep bits, in order.
    order_steps: ``[O]`` ``(level, position)`` loop positions decided, per
      level innermost first.
    prefix: ``[L]`` fixed innermost loop dims of each level.
    free_order: ``[L]`` dims whose loop position is decided per level.
    objective: ``edp``, ``energy`` or ``delay``.
    dp_shape: ``(P, G)``: states and spatial groups the mapspace's dynamic
      program tables are padded to.
  """
  structure: Structure
  num_rows: int
  keep_steps: tuple
  order_steps: tuple
  prefix: tuple
  free_order: tuple
  objective: str = "edp"
  dp_shape: tuple = (1, 1)

  @property
  def horizon(self) -> int:
    """Steps of an episode: ``K + D + O``."""
    return (len(self.keep_steps) + self.structure.num_dims
            + len(self.order_steps))

  @property
  def num_actions(self) -> int:
    """``A``: action ids are rows (factor), dims (order) or 0/1 (keep)."""
    return max(self.num_rows, self.structure.num_dims, 2)

  def phase_table(self) -> tuple[np.ndarray, np.ndarray]:
    """``(phase i32[H + 1], index i32[H + 1])``: each step's phase and its
    index within the phase (keep bit, dim, order step); step H is DONE."""
    K, D, O = len(self.keep_steps), self.structure.num_dims, len(
        self.order_steps)
    phase = np.asarray([KEEP] * K + [FACTOR] * D + [ORDER] * O + [DONE],
                       np.int32)
    index = np.asarray(list(range(K)) + list(range(D)) + list(range(O))
                       + [0], np.int32)
    return phase, index


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class EnvParams:
  """Numbers of one environment (data; arrays).

  Attributes:
    arch: ``ArchParams`` (energies, capacities, bandwidths).
    rows: ``i32[D, N, 3L]`` factorization tables, padded with ones
      (slot ``kind * L + level``, kinds temporal, X, Y).
    row_ok: ``bool[D, N]`` real (not padding) rows.
    row_group: ``i32[D, N]`` each row's spatial group (mapspace DP).
    row_cum: ``f64[D, N, L]`` cumulative op-space extent of each row at
      each level (all its factors at levels <= l).
    trans: ``i32[D, P, G]`` DP transition (``-1``: over a fan-out).
    live: ``bool[D + 1, P]`` DP states with a completion.
    floor: ``f64[D, L]`` smallest cumulative extents of each dim.
    keep_fixed: ``bool[L, S]`` keep bits of the constraints (free bits
      False).
    bounds: ``i64[D]`` the problem's dim bounds (the model's factor
      check; the layout's structure may be a layer kind's).
  """
  arch: ArchParams
  rows: jax.Array
  row_ok: jax.Array
  row_group: jax.Array
  row_cum: jax.Array
  trans: jax.Array
  live: jax.Array
  floor: jax.Array
  keep_fixed: jax.Array
  bounds: jax.Array


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class EnvState:
  """Where an episode is.

  Attributes:
    t: ``i32[]`` steps taken.
    keep: ``bool[L, S]``; fidx: ``i32[D]`` rows chosen (0 undecided);
    cum: ``f64[D, L]`` cumulative extents (chosen rows, floors otherwise);
    dp: ``i32[]`` mapspace DP state; order: ``i32[L, D]``;
    placed: ``bool[L, D]`` loops whose position is decided;
    mask: ``bool[A]`` legal actions of the next step.
  """
  t: jax.Array
  keep: jax.Array
  fidx: jax.Array
  cum: jax.Array
  dp: jax.Array
  order: jax.Array
  placed: jax.Array
  mask: jax.Array


# ------------------------------------------------------------------ build
def dp_shape(ms: Mapspace) -> tuple[int, int]:
  """``(P, G)``: DP states and spatial groups of ``ms``'s largest table."""
  P = max(max(t.shape[0] for t in ms._trans), len(ms._counts[-1]))
  return P, max(t.shape[1] for t in ms._trans)


def build_layout(ms: Mapspace, objective: str = "edp",
                 structure: Optional[Structure] = None,
                 padding: Optional[tuple] = None) -> EnvLayout:
  """The static plan of ``ms``'s episodes.

  Args:
    structure: the structure the programs compile for (a layer kind's,
      :func:`jaxloop.network.kinds.kind_structure`; default ``ms``'s own).
    padding: ``(N, P, G)`` table shapes to pad to (default ``ms``'s own).

  Raises:
    SpecError: an unknown objective.
  """
  if objective not in OBJECTIVES:
    raise SpecError(f"unknown environment objective '{objective}'",
                    path="objective", hint="Use one of " + ", ".join(
                        OBJECTIVES))
  s = ms.structure
  own = (max(len(d.table) for d in ms.dims),) + dp_shape(ms)
  padding = own if padding is None else padding
  order_steps = tuple((l, len(ms.prefix[l]) + k)
                      for l in range(s.num_levels)
                      for k in range(len(ms.free_order[l]))
                      if not s.is_dummy[l])
  return EnvLayout(
      structure=s if structure is None else structure,
      num_rows=int(padding[0]),
      keep_steps=tuple((int(l), int(k)) for l, k in ms.free_keep),
      order_steps=order_steps, prefix=tuple(map(tuple, ms.prefix)),
      free_order=tuple(map(tuple, ms.free_order)), objective=objective,
      dp_shape=(int(padding[1]), int(padding[2])))


def row_cumulative(table: np.ndarray, num_levels: int) -> np.ndarray:
  """``f64[N, L]``: cumulative op-space extent at each level of each row
  of a factorization table ``[N, 3L]`` (temporal times X times Y factors
  of all levels <= l: the dim's extent in level l's tile)."""
  per_level = table.reshape(len(table), 3, num_levels).prod(axis=1)
  return np.cumprod(per_level.astype(np.float64), axis=1)


def build_params(ms: Mapspace, arch: ArchParams, num_rows: int,
                 dp: Optional[tuple] = None) -> EnvParams:
  """The environment's arrays for mapspace ``ms`` (numpy, then jnp); factor
  tables padded to ``num_rows`` rows, DP tables to ``dp = (P, G)``."""
  s = ms.structure
  L, D = s.num_levels, s.num_dims
  rows = np.ones((D, num_rows, 3 * L), FACTOR_DTYPE)
  row_ok = np.zeros((D, num_rows), bool)
  group = np.zeros((D, num_rows), np.int32)
  row_cum = np.ones((D, num_rows, L))
  for d, ds in enumerate(ms.dims):
    n = len(ds.table)
    rows[d, :n] = ds.table
    row_ok[d, :n] = True
    group[d, :n] = ds.group
    row_cum[d, :n] = row_cumulative(ds.table, L)
  P, G = dp_shape(ms) if dp is None else dp
  trans = np.full((D, P, G), -1, np.int32)
  live = np.zeros((D + 1, P), bool)
  for d, t in enumerate(ms._trans):
    trans[d, :t.shape[0], :t.shape[1]] = t
  for d, c in enumerate(ms._counts):
    live[d, :len(c)] = [int(x) > 0 for x in c]
  floor = np.stack([row_cum[d, row_ok[d]].min(axis=0) for d in range(D)])
  return EnvParams(
      arch=jax.tree.map(jnp.asarray, arch), rows=jnp.asarray(rows),
      row_ok=jnp.asarray(row_ok), row_group=jnp.asarray(group),
      row_cum=jnp.asarray(row_cum), trans=jnp.asarray(trans),
      live=jnp.asarray(live), floor=jnp.asarray(floor),
      keep_fixed=jnp.asarray(ms.keep_rule == 1),
      bounds=jnp.asarray(s.dim_bounds, jnp.int64))


def floors_are_rows(ms: Mapspace) -> bool:
  """Whether every dim's floor (smallest cumulative extents) is one of its
  rows, with no spatial factor: then the capacity mask has no dead end."""
  L = ms.structure.num_levels
  for ds in ms.dims:
    cum = row_cumulative(ds.table, L)
    at_floor = np.all(cum == cum.min(axis=0), axis=1)
    spatial = ds.table[:, L:].prod(axis=1) == 1
    if not np.any(at_floor & spatial):
      return False
  return True


# ------------------------------------------------------------------ masks
def tiles_fit(structure: Structure, arch: ArchParams, keep: jax.Array,
              extents) -> jax.Array:
  """``bool[...]``: the kept tiles fit every level's capacity.

  Args:
    keep: ``bool[L, S]`` keep bits (storage-less levels keep nothing).
    extents: ``[D]`` list of ``[..., L]`` op-space extents of each dim in
      each level's tile (a list, so a caller can vary one dim over
      candidates ``[N, L]`` while the others stay ``[L]``).

  Computed in float32 rank form by rank form (elementwise, fused): extents
  and products below 2**24 are exact, and a product past 2**24 only grows,
  so the verdict against a finite capacity below 2**24 words is exact.
  """
  expr = tiling.expressions(structure)
  ext = [e.astype(jnp.float32) for e in extents]
  forms = []
  for terms in expr.terms:
    v = 1.0
    for d, c in terms:
      v = v + c * (ext[d] - 1.0)            # [..., L] or [L]
    forms.append(v)
  shape = jnp.broadcast_shapes(*(jnp.shape(e) for e in ext))   # [..., L]
  lead = (1,) * (len(shape) - 1)
  dummy = np.asarray(structure.is_dummy, bool)
  used = jnp.zeros(shape, jnp.float32)
  for s, idx in enumerate(expr.of_dataspace):
    size = jnp.ones(shape, jnp.float32)
    for k in idx:
      size = size * jnp.broadcast_to(forms[k], shape)
    kept = (keep[:, s] & ~dummy).reshape(lead + (-1,))
    used = used + jnp.where(kept, size, 0.0)
  cap = arch.capacity.astype(jnp.float32).reshape(lead + (-1,))
  return jnp.all(used <= cap, axis=-1)


def _or_fallback(legal: jax.Array, fits: jax.Array) -> jax.Array:
  """``legal & fits``, or ``legal`` alone when that leaves nothing."""
  both = legal & fits
  return jnp.where(jnp.any(both), both, legal)


def _pad_to(x: jax.Array, n: int) -> jax.Array:
  return jnp.pad(x, (0, n - x.shape[0]))


_ENVS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


class MappingEnv:
  """The environment of one workload (see the module docstring).

  Attributes:
    layout: :class:`EnvLayout` (static, hashable).
    default_params: :class:`EnvParams` of the workload's own numbers.
    mapspace: the constrained mapspace.
    capacity_exact: capacity masks leave no dead end (every terminal
      mapping then fits every buffer).
  """

  def __init__(self, workload, objective: str = "edp",
               mapspace: Optional[Mapspace] = None,
               kind: Optional[Structure] = None,
               padding: Optional[tuple] = None):
    """``kind``: the structure to compile for (a layer kind's, holding
    upper bounds of the workload's; default the workload's own);
    ``padding``: ``(N, P, G)`` table shapes (see :func:`build_layout`)."""
    self.mapspace = mapspace if mapspace is not None else workload.mapspace
    self.layout = build_layout(self.mapspace, objective, kind, padding)
    with jax.enable_x64(True):
      self.default_params = build_params(self.mapspace, workload.params,
                                         self.layout.num_rows,
                                         self.layout.dp_shape)
      self.capacity_exact = floors_are_rows(self.mapspace) and bool(
          tiles_fit(self.layout.structure, self.default_params.arch,
                    self.default_params.keep_fixed,
                    list(self.default_params.floor)))
    self._phase, self._index = self.layout.phase_table()

  @staticmethod
  def of(workload) -> "MappingEnv":
    """The workload's environment (edp objective), built once per workload
    object, so its compiled programs are reused."""
    env = _ENVS.get(workload)
    if env is None:
      env = _ENVS[workload] = MappingEnv(workload)
    return env

  @staticmethod
  def family(workloads, objective: str = "edp") -> list["MappingEnv"]:
    """Environments of ``workloads`` (one per workload, in order) that
    share compiled programs: workloads of one layer kind
    (:func:`jaxloop.network.kinds.kind_key`) with the same decision plan
    get the kind's structure and tables padded to the group's largest, so
    one program serves them all (their numbers as :class:`EnvParams`)."""
    from jaxloop.network import kinds
    groups: dict = {}
    for i, wl in enumerate(workloads):
      plan = build_layout(wl.mapspace, objective)
      key = (kinds.kind_key(wl.structure), plan.keep_steps,
             plan.order_steps, plan.prefix, plan.free_order)
      groups.setdefault(key, []).append((i, wl, plan))
    envs = [None] * len(workloads)
    for members in groups.values():
      kind = kinds.kind_structure([wl.structure for _, wl, _ in members])
      padding = (max(p.num_rows for _, _, p in members),
                 max(p.dp_shape[0] for _, _, p in members),
                 max(p.dp_shape[1] for _, _, p in members))
      for i, wl, _ in members:
        envs[i] = MappingEnv(wl, objective, kind=kind, padding=padding)
    return envs

  # ------------------------------------------------------------ episodes
  def reset(self, key: jax.Array, params: EnvParams):
    """``(obs, state)`` of a fresh episode (``key`` unused: the start is
    deterministic)."""
    del key
    require_x64("MappingEnv.reset")
    lay = self.layout
    s = lay.structure
    L, D = s.num_levels, s.num_dims
    order = np.tile(np.arange(D, dtype=np.int32), (L, 1))
    placed = np.ones((L, D), bool)
    for l in range(L):
      if not s.is_dummy[l]:
        order[l] = list(lay.prefix[l]) + list(lay.free_order[l])
        placed[l, list(lay.free_order[l])] = False
    state = EnvState(
        t=jnp.int32(0), keep=params.keep_fixed,
        fidx=jnp.zeros(D, jnp.int32), cum=params.floor, dp=jnp.int32(0),
        order=jnp.asarray(order), placed=jnp.asarray(placed),
        mask=jnp.zeros(lay.num_actions, bool))
    state = dataclasses.replace(state, mask=self._mask(state, params))
    return self.observe(state, params), state

  def step(self, key: jax.Array, state: EnvState, action: jax.Array,
           params: EnvParams):
    """``(obs, state, reward, done, info)`` after ``action`` (``i32[]``).

    ``info``: ``valid`` (the finished mapping passes the exact model's
    checks; True before the end) and ``objective`` (the finished mapping's
    objective, NaN before the end)."""
    del key
    require_x64("MappingEnv.step")
    H = self.layout.horizon
    new = self.advance(state, action, params)
    finished = (state.t == H - 1)
    reward, stats = self.one_shot(params, self.mapping_of(new, params))
    objective = self.objective_of(stats)
    info = {"valid": jnp.where(finished, stats.valid, True),
            "objective": jnp.where(finished, objective, jnp.nan)}
    return (self.observe(new, params), new,
            jnp.where(finished, reward, 0.0), new.t >= H, info)

  def advance(self, state: EnvState, action: jax.Array,
              params: EnvParams, t=None) -> EnvState:
    """The state after ``action``, without the reward: :meth:`step` less
    the exact model (a lockstep rollout evaluates its mappings once, at the
    end, with :meth:`one_shot`).

    ``t``: the state's step when every episode of a batch is at the same
    one (lockstep; pass it unbatched under ``vmap``): then only the next
    decision's mask is computed (a real branch), not all phases' masks."""
    new = self._apply(state, jnp.asarray(action, jnp.int32), params)
    new = dataclasses.replace(new, t=jnp.minimum(state.t + 1,
                                                 self.layout.horizon))
    if t is None:
      return dataclasses.replace(new, mask=self._mask(new, params))
    nxt = jnp.minimum(jnp.asarray(t) + 1, self.layout.horizon)
    return dataclasses.replace(new, mask=self._mask_at(new, params, nxt))

  def observe(self, state: EnvState, params: EnvParams) -> dict:
    """The observation: ``mask bool[A]``, ``phase``/``index`` ``i32[]``
    (the next decision), ``partial``: the mapping so far (undecided dims'
    factors 1), ``keep bool[L, S]``, ``placed bool[L, D]``."""
    phase = jnp.asarray(self._phase)[state.t]
    return {"mask": state.mask, "phase": phase,
            "index": jnp.asarray(self._index)[state.t],
            "partial": self.mapping_of(state, params, decided_only=True),
            "keep": state.keep, "placed": state.placed}

  # --------------------------------------------------------- transitions
  def _apply(self, st: EnvState, a: jax.Array, params: EnvParams) -> EnvState:
    """The state after action ``a`` at step ``st.t`` (any phase)."""
    lay = self.layout
    phase = jnp.asarray(self._phase)[st.t]
    i = jnp.asarray(self._index)[st.t]
    keep, fidx, cum, dp, order, placed = (st.keep, st.fidx, st.cum, st.dp,
                                          st.order, st.placed)
    if lay.keep_steps:
      kl, ks = (jnp.asarray(v) for v in zip(*lay.keep_steps))
      keep = jnp.where(phase == KEEP,
                       keep.at[kl[i], ks[i]].set(a == 1), keep)
    d = jnp.minimum(i, lay.structure.num_dims - 1)
    a_row = jnp.minimum(a, lay.num_rows - 1)
    is_f = phase == FACTOR
    fidx = jnp.where(is_f, fidx.at[d].set(a_row), fidx)
    cum = jnp.where(is_f, cum.at[d].set(params.row_cum[d, a_row]), cum)
    dp = jnp.where(is_f, params.trans[d, dp, params.row_group[d, a_row]], dp)
    if lay.order_steps:
      ol, op = (jnp.asarray(v) for v in zip(*lay.order_steps))
      a_dim = jnp.minimum(a, lay.structure.num_dims - 1)
      is_o = phase == ORDER
      order = jnp.where(is_o, order.at[ol[i], op[i]].set(a_dim), order)
      placed = jnp.where(is_o, placed.at[ol[i], a_dim].set(True), placed)
    return dataclasses.replace(st, keep=keep, fidx=fidx, cum=cum,
                               dp=jnp.maximum(dp, 0), order=order,
                               placed=placed)

  def _mask(self, st: EnvState, params: EnvParams) -> jax.Array:
    """``bool[A]`` legal actions at step ``st.t``."""
    lay = self.layout
    A = lay.num_actions
    phase = jnp.asarray(self._phase)[st.t]
    i = jnp.asarray(self._index)[st.t]
    masks = [jnp.zeros(A, bool)] * 4
    if lay.keep_steps:
      masks[KEEP] = _pad_to(self._keep_mask(st, params, i), A)
    masks[FACTOR] = _pad_to(self._factor_mask(st, params, i), A)
    if lay.order_steps:
      masks[ORDER] = _pad_to(self._order_mask(st, i), A)
    return jnp.stack(masks)[phase]

  def _mask_at(self, st: EnvState, params: EnvParams,
               t: jax.Array) -> jax.Array:
    """``bool[A]`` legal actions at step ``t`` (``st.t``, given unbatched
    so that only its phase's mask is computed)."""
    lay = self.layout
    A = lay.num_actions
    i = jnp.asarray(self._index)[t]
    none = lambda: jnp.zeros(A, bool)
    branches = [
        (lambda: _pad_to(self._keep_mask(st, params, i), A))
        if lay.keep_steps else none,
        lambda: _pad_to(self._factor_mask(st, params, i), A),
        (lambda: _pad_to(self._order_mask(st, i), A))
        if lay.order_steps else none, none]
    return jax.lax.switch(jnp.asarray(self._phase)[t], branches)

  def _keep_mask(self, st, params, i) -> jax.Array:
    """``bool[2]``: bypass always; keep when the floor tiles still fit."""
    kl, ks = (jnp.asarray(v) for v in zip(*self.layout.keep_steps))
    kept = st.keep.at[kl[i], ks[i]].set(True)
    fits = tiles_fit(self.layout.structure, params.arch, kept,
                     list(st.cum))
    return jnp.stack([jnp.bool_(True), fits])

  def _factor_mask(self, st, params, i) -> jax.Array:
    """``bool[N]``: rows of dim ``i`` that keep a DP completion and whose
    tiles fit with the other dims as decided (or at their floors)."""
    D = self.layout.structure.num_dims
    d = jnp.minimum(i, D - 1)
    nxt = params.trans[d, st.dp, params.row_group[d]]            # [N]
    legal = params.row_ok[d] & (nxt >= 0) & params.live[
        jnp.minimum(d + 1, D), jnp.maximum(nxt, 0)]
    rows = params.row_cum[d]                                     # [N, L]
    ext = [jnp.where(k == d, rows, st.cum[k][None]) for k in range(D)]
    fits = tiles_fit(self.layout.structure, params.arch, st.keep, ext)
    return _or_fallback(legal, fits)

  def _order_mask(self, st, i) -> jax.Array:
    """``bool[D]``: free loops of the step's level not yet placed."""
    ol = jnp.asarray([l for l, _ in self.layout.order_steps])
    return ~st.placed[ol[i]]

  # ----------------------------------------------------------- mappings
  def mapping_of(self, st: EnvState, params: EnvParams,
                 decided_only: bool = False) -> Mapping:
    """The state's mapping (``[L, D]``/``[L, S]`` fields); with
    ``decided_only`` the undecided dims have factor 1 everywhere."""
    s = self.layout.structure
    L, D = s.num_levels, s.num_dims
    rows = params.rows[jnp.arange(D), st.fidx]                   # [D, 3L]
    if decided_only:
      phase = jnp.asarray(self._phase)[st.t]
      decided = (phase > FACTOR) | ((phase == FACTOR) & (
          jnp.arange(D) < jnp.asarray(self._index)[st.t]))
      rows = jnp.where(decided[:, None], rows, 1)
    fac = jnp.transpose(rows.reshape(D, 3, L), (1, 2, 0))        # [3, L, D]
    return Mapping(temporal=fac[0], spatial_x=fac[1], spatial_y=fac[2],
                   order=st.order, keep=st.keep)

  def objective_of(self, stats: Stats) -> jax.Array:
    """The objective of exact statistics (``edp``, ``energy``, ``delay``)."""
    return {"edp": lambda: stats.edp, "energy": lambda: stats.energy_total,
            "delay": lambda: stats.cycles}[self.layout.objective]()

  def one_shot(self, params: EnvParams, mapping: Mapping):
    """``(reward, stats)`` of a whole mapping (``[L, D]`` fields): the
    bandit interface.  ``reward = -log(objective)``, less
    ``INVALID_PENALTY`` when the model reports it invalid; traceable."""
    stats = _batched_model(self.layout.structure)(params.arch, mapping,
                                                  params.bounds)
    value = jnp.log(self.objective_of(stats).astype(jnp.float64))
    return -value - jnp.where(stats.valid, 0.0, INVALID_PENALTY), stats

  # -------------------------------------------------- genomes and actions
  def actions_of(self, g: Genome) -> np.ndarray:
    """``i32[B, H]``: the actions that build each genome of the mapspace
    (the keep bits, the factorization rows, the free loops' dims in
    order): teacher forcing for imitation.

    Raises:
      SpecError: a genome whose loop order breaks a level's fixed prefix.
    """
    lay = self.layout
    cols = [g.keep[:, l, s].astype(np.int32) for l, s in lay.keep_steps]
    cols += [g.fidx[:, d].astype(np.int32)
             for d in range(lay.structure.num_dims)]
    for l, pre in enumerate(lay.prefix):
      if pre and not np.all(g.order[:, l, :len(pre)] == np.asarray(pre)):
        raise SpecError(f"a genome's loop order at level "
                        f"'{lay.structure.level_names[l]}' breaks the fixed "
                        "permutation prefix", path="mapping")
    cols += [g.order[:, l, pos].astype(np.int32) for l, pos in lay.order_steps]
    return np.stack(cols, axis=1) if cols else np.zeros((len(g), 0), np.int32)

  def genome_of(self, states: EnvState) -> Genome:
    """The mapspace genomes of a batch of states (numpy)."""
    return Genome(np.asarray(states.fidx, np.int64),
                  np.asarray(states.order, np.int32),
                  np.asarray(states.keep, bool))

  def replay(self, params: EnvParams, actions: jax.Array):
    """Runs one episode from ``actions i32[H]`` (traceable; vmap for a
    batch).

    Returns:
      ``(obs, rewards f64[H], final EnvState)``: ``obs`` stacked over the
      H decisions (each the observation *before* its action).
    """
    obs0, st0 = self.reset(jax.random.PRNGKey(0), params)
    H = self.layout.horizon

    def body(carry, xs):
      obs, st = carry
      a, t = xs
      st2 = self.advance(st, a, params, t)
      return (self.observe(st2, params), st2), obs

    (_, final), obs = jax.lax.scan(body, (obs0, st0),
                                   (actions, jnp.arange(H)))
    # The exact model once, on the finished mapping: :meth:`step`'s
    # rewards are 0 before the last step.
    reward, _ = self.one_shot(params, self.mapping_of(final, params))
    return obs, jnp.zeros(H).at[H - 1].set(reward), final

  @exact
  def random_rollouts(self, key: jax.Array, n: int,
                      params: Optional[EnvParams] = None):
    """``n`` episodes with uniformly random legal actions (the random
    policy): ``(returns f64[n], valid bool[n], final EnvState [n])``."""
    params = self.default_params if params is None else params
    return _random_program(self)(key, params, n)

  def program(self, name, build):
    """The jitted program ``name`` of this environment's layout, built by
    ``build(env)`` once per (layout, name) and shared by every
    environment of an equal layout (their numbers are arguments)."""
    key = (self.layout, name)
    if key not in _PROGRAMS:
      _PROGRAMS[key] = build(self)
    return _PROGRAMS[key]


# Compiled programs by (layout, name): environments of one layout (the
# layers of a kind, :meth:`MappingEnv.family`) share them.
_PROGRAMS: dict = {}


def compiled_programs() -> int:
  """Compilations of the environment's and policy's programs in this
  process (one per layout, name and static argument: sample size, greedy
  flag)."""
  return sum(fn._cache_size() for fn in _PROGRAMS.values())


@functools.lru_cache(maxsize=64)
def _batched_model(structure: Structure):
  """``model.evaluate`` of one mapping whose ``vmap`` (over mappings, the
  architecture shared) is ``model.evaluate_batch``: the model's blocked,
  batch-last loop instead of a vmapped single evaluation (10x and more
  faster per environment step on CPU)."""

  @jax.custom_batching.custom_vmap
  def run(arch, mapping, bounds):
    return model.evaluate(structure, arch, mapping, bounds)

  @run.def_vmap
  def _rule(axis_size, in_batched, arch, mapping, bounds):
    arch_batched, map_batched, bounds_batched = in_batched
    spread = lambda tree, flags: jax.tree.map(
        lambda x, b: x if b else jnp.broadcast_to(x, (axis_size,) + x.shape),
        tree, flags)
    if any(jax.tree.leaves((arch_batched, bounds_batched))):   # a sweep
      out = jax.vmap(lambda a, m, b: model.evaluate(structure, a, m, b))(
          spread(arch, arch_batched), spread(mapping, map_batched),
          spread(bounds, bounds_batched))
    else:
      out = model.evaluate_batch(structure, arch, spread(mapping,
                                                         map_batched),
                                 bounds=bounds)
    return out, jax.tree.map(lambda _: True, out)

  return run


def random_action(key: jax.Array, mask: jax.Array) -> jax.Array:
  """A uniformly random legal action (``i32[]``) of ``mask bool[A]``."""
  logits = jnp.where(mask, 0.0, -jnp.inf)
  return jax.random.categorical(key, logits).astype(jnp.int32)


def _random_program(env: MappingEnv):
  """Jitted ``(key, params, n) -> (returns, valid, final)`` (shared by the
  environments of one layout)."""
  return env.program("random", _build_random)


def _build_random(env: MappingEnv):
  """The random policy's rollouts: :func:`_random_program`."""
  H = env.layout.horizon

  def run(key, params, n):
    keys = jax.random.split(key, n)
    _, st = jax.vmap(env.reset, (0, None))(keys, params)
    step_keys = jax.vmap(lambda k: jax.random.split(k, H))(keys)  # [n, H]

    def body(st, t):
      a = jax.vmap(random_action)(step_keys[:, t], st.mask)
      return jax.vmap(env.advance, (0, 0, None, None))(st, a, params,
                                                       t), None

    st, _ = jax.lax.scan(body, st, jnp.arange(H))
    mappings = jax.vmap(env.mapping_of, (0, None))(st, params)
    ret, stats = jax.vmap(env.one_shot, (None, 0))(params, mappings)
    return ret, stats.valid, st

  return jax.jit(run, static_argnums=2)
