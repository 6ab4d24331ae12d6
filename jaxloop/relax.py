"""Relaxed (continuous) mappings for gradient-guided mapspace search.

A :class:`RelaxedMapping` holds free real parameters; the exact model in
:mod:`jaxloop.model` evaluates them directly (float factors and soft keep
weights select its relaxed mode, see :mod:`jaxloop.model.access`):

* factors: per dim, logits over the slots the :class:`~jaxloop.mapspace.
  Mapspace` leaves free (temporal per storage level, spatial X/Y where the
  fan-out is > 1 and the constraints allow it).  The log-factors are
  ``softmax(logits) * log(bound / fixed)`` plus the fixed factors' logs, so
  the product over slots equals the bound by construction;
* loop order: a score per (level, dim); orders are Plackett-Luce samples
  (Gumbel-perturbed argsort, highest score innermost), the fixed
  permutation prefix stays innermost; the objective is differentiated by
  the score-function estimator (see :func:`make_loss`);
* keep/bypass: logits -> sigmoid for the free bits; fixed bits (dummy
  levels bypass, the outermost level keeps, constraints) are constants.

:meth:`RelaxedSpace.round` maps a batch back to the nearest discrete
factorization that is in the mapspace (nearest table row per dim in
log-space, restricted so that the fan-outs are always respected), and
:func:`repair_rounds_loop` repairs capacity overflow by moving prime factors
to the outermost temporal slot, checking every candidate with the exact
model (:func:`project`/:func:`to_mapping` add a fallback that guarantees
legal results).

This module depends on the mapspace and the model only; the searches that
use it live in :mod:`jaxloop.mapper.gradient`.
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np

from jaxloop.evaluator import Evaluator
from jaxloop.mapspace import SPATIAL_X, SPATIAL_Y, TEMPORAL, Genome, Mapspace
from jaxloop.model.blocks import pad_rows
from jaxloop.model.evaluate import evaluate
from jaxloop.structure import Structure
from jaxloop.types import Array, ArchParams, Mapping, Stats, _pytree

# Score offset that keeps the fixed permutation prefix innermost.
_PREFIX_BIAS = 1e4
# Logit of slots that are not free (softmax weight exp(-1e30) = 0).
_MASKED = -1e30


@_pytree
class RelaxedMapping:
  """Free parameters of one relaxed mapping (or a batch, leading B axis).

  Attributes:
    factor_logits: ``[D, 3L]`` per dim, a logit per slot
      (``kind * L + level``, kinds temporal, X, Y); only free slots count.
    order_scores: ``[L, D]`` loop-order scores (higher = more inner).
    keep_logits: ``[L, S]`` keep logits (only free bits count).
  """
  factor_logits: Array
  order_scores: Array
  keep_logits: Array


@dataclasses.dataclass(frozen=True, eq=False)
class RelaxedSpace:
  """Static (numpy) description of a mapspace for the relaxation.

  Attributes:
    ms: the mapspace.
    free: ``bool[D, 3L]`` slots whose factor is free.
    fixed_log: ``[D, 3L]`` log of the fixed factors (0 at free slots).
    log_rem: ``[D]`` log of the product left to the free slots.
    prefix_bias: ``[L, D]`` constants putting the fixed prefix innermost.
    free_order: ``bool[L, D]`` dims whose loop position is free.
    keep_fixed: ``i8[L, S]``: 1 keep, 0 bypass, -1 free.
  """
  ms: Mapspace
  free: np.ndarray
  fixed_log: np.ndarray
  log_rem: np.ndarray
  prefix_bias: np.ndarray
  free_order: np.ndarray
  keep_fixed: np.ndarray

  @classmethod
  def from_mapspace(cls, ms: Mapspace) -> "RelaxedSpace":
    s = ms.structure
    L, D = s.num_levels, s.num_dims
    K = 3 * L
    free = np.zeros((D, K), bool)
    fixed_log = np.zeros((D, K))
    log_rem = np.zeros(D)
    for d, ds in enumerate(ms.dims):
      free[d, list(ds.free)] = True
      row = ds.table[0].astype(np.float64)
      fixed_log[d] = np.where(free[d], 0.0, np.log(row))
      log_rem[d] = np.log(s.dim_bounds[d]) - fixed_log[d].sum()
      if len(ds.free) == 0:
        log_rem[d] = 0.0
    prefix_bias = np.zeros((L, D))
    free_order = np.zeros((L, D), bool)
    for l in range(L):
      if s.is_dummy[l]:
        continue
      pre = ms.prefix[l]
      for pos, d in enumerate(pre):
        prefix_bias[l, d] = _PREFIX_BIAS * (len(pre) - pos)
      free_order[l, list(ms.free_order[l])] = True
    return cls(ms, free, fixed_log, log_rem, prefix_bias, free_order,
               np.asarray(ms.keep_rule, np.int8))

  @property
  def structure(self) -> Structure:
    return self.ms.structure

  # ------------------------------------------------------------ parameters
  def init(self, rng: np.random.Generator, n: int,
           scale: float = 1.0) -> RelaxedMapping:
    """``n`` random starting points (numpy, leading axis n)."""
    s = self.structure
    L, D, S = s.num_levels, s.num_dims, s.num_dataspaces
    return RelaxedMapping(
        factor_logits=rng.normal(0.0, scale, (n, D, 3 * L)),
        order_scores=rng.normal(0.0, scale, (n, L, D)),
        keep_logits=rng.normal(0.0, scale, (n, L, S)))

  def log_factors(self, r: RelaxedMapping) -> Array:
    """``[..., D, 3L]`` log-factors; each dim's row sums to log(bound)."""
    z = jnp.where(self.free, r.factor_logits, _MASKED)
    w = jax.nn.softmax(z, axis=-1)
    return self.fixed_log + w * self.log_rem[:, None]

  def factors(self, r: RelaxedMapping):
    """``(temporal, spatial_x, spatial_y)``, each ``[L, D]`` float64."""
    L = self.structure.num_levels
    f = jnp.exp(self.log_factors(r))                                # [D, 3L]
    return (f[:, TEMPORAL * L:(TEMPORAL + 1) * L].T,
            f[:, SPATIAL_X * L:(SPATIAL_X + 1) * L].T,
            f[:, SPATIAL_Y * L:(SPATIAL_Y + 1) * L].T)

  def keep_soft(self, r: RelaxedMapping, temperature=1.0) -> Array:
    """``[L, S]`` keep weights in [0, 1] (fixed bits exactly 0 or 1)."""
    p = jax.nn.sigmoid(r.keep_logits / temperature)
    return jnp.where(self.keep_fixed < 0, p,
                     (self.keep_fixed > 0).astype(p.dtype))

  def sample_order(self, r: RelaxedMapping, key, scale=1.0) -> Array:
    """``i32[L, D]`` Plackett-Luce sample (``scale = 0``: the argsort)."""
    g = jax.random.gumbel(key, r.order_scores.shape) * scale
    s = jnp.where(self.free_order, jax.lax.stop_gradient(r.order_scores) + g,
                  0.0) + self.prefix_bias
    order = jnp.argsort(-s, axis=-1, stable=True).astype(jnp.int32)
    dummy = np.asarray(self.structure.is_dummy)[:, None]
    return jnp.where(dummy, jnp.arange(s.shape[-1], dtype=jnp.int32), order)

  def order_log_prob(self, r: RelaxedMapping, order: Array) -> Array:
    """``[]`` log-probability of ``order`` under the Plackett-Luce scores.

    Only free positions count: the prefix is innermost, so the positions
    from the prefix length on hold exactly the free dims.
    """
    s = jnp.take_along_axis(r.order_scores, order, axis=-1)          # [L, D]
    lse = jax.lax.cumlogsumexp(s, axis=s.ndim - 1, reverse=True)
    free_sorted = jnp.take_along_axis(jnp.asarray(self.free_order), order,
                                      axis=-1)
    return jnp.sum(jnp.where(free_sorted, s - lse, 0.0))

  def mapping(self, r: RelaxedMapping, order: Array,
              temperature=1.0) -> Mapping:
    """The relaxed ``Mapping`` (float factors, soft keep) of one point."""
    t, x, y = self.factors(r)
    return Mapping(temporal=t, spatial_x=x, spatial_y=y, order=order,
                   keep=self.keep_soft(r, temperature))

  # -------------------------------------------------------------- rounding
  def round(self, r: RelaxedMapping) -> Genome:
    """Nearest mapspace genomes of a numpy batch (fan-outs always fit).

    Per dim (in order), the table row closest in log-space to the relaxed
    log-factors among the rows whose spatial factors still fit the fan-outs
    with the dims already placed and leave a completion (the mapspace's
    dynamic program); loop order = argsort of the scores (prefix kept);
    keep = free logit > 0.
    """
    ms = self.ms
    z = np.where(self.free, np.asarray(r.factor_logits), _MASKED)
    z = np.exp(z - z.max(-1, keepdims=True))
    w = z / z.sum(-1, keepdims=True)
    logf = self.fixed_log + w * self.log_rem[:, None]               # [B, D, K]
    n = logf.shape[0]
    state = np.zeros(n, np.int64)
    fidx = np.zeros((n, len(ms.dims)), np.int64)
    for d, ds in enumerate(ms.dims):
      free = list(ds.free)
      if len(ds.table) == 1 or not free:
        row = np.zeros(n, np.int64)
      else:
        lt = np.log(ds.table[:, free].astype(np.float64))           # [N, F]
        a = logf[:, d, free]                                        # [B, F]
        dist = ((a * a).sum(1)[:, None] - 2.0 * a @ lt.T
                + (lt * lt).sum(1)[None, :])
        alive = self._alive(d)
        t = ms._trans[d][state]                                     # [B, G]
        ok_g = (t >= 0) & alive[np.maximum(t, 0)]
        dist = np.where(ok_g[:, ds.group], dist, np.inf)
        row = np.argmin(dist, axis=1)
      fidx[:, d] = row
      state = ms._trans[d][state, ds.group[row]]
    scores = np.where(self.free_order, np.asarray(r.order_scores), 0.0)
    order = np.argsort(-(scores + self.prefix_bias), axis=-1,
                       kind="stable").astype(np.int32)
    dummy = np.asarray(self.structure.is_dummy)
    order[:, dummy] = np.arange(self.structure.num_dims, dtype=np.int32)
    keep = np.where(self.keep_fixed < 0, np.asarray(r.keep_logits) > 0,
                    self.keep_fixed > 0)
    return Genome(fidx, order, keep)

  def _alive(self, d: int) -> np.ndarray:
    cache = self.__dict__.setdefault("_alive_cache", {})
    if d not in cache:
      cache[d] = np.asarray([int(c) > 0 for c in self.ms._counts[d + 1]])
    return cache[d]

  def repair(self, rng: np.random.Generator, g: Genome, used: np.ndarray,
             capacity: np.ndarray) -> Genome:
    """One outward move per genome against capacity overflow.

    Moves one prime of some dim from a slot at or below the innermost
    overflowing level to the outermost free temporal slot of that dim (a
    neighbour row of the dim's table, so the result stays in the mapspace;
    spatial products only shrink).

    Args:
      rng: random generator (which dim moves).
      g: ``[B]`` genomes.
      used: ``[B, L]`` utilized capacity per level (exact model).
      capacity: ``[L]`` capacity per level.
    """
    ms = self.ms
    L = self.structure.num_levels
    over = used > capacity[None, :]
    lo = np.where(over.any(1), np.argmax(over, axis=1), L - 1)
    fidx = g.fidx.copy()
    n, D = fidx.shape
    for i in range(n):
      cands = []
      for d, ds in enumerate(ms.dims):
        temporal_free = [k for k in ds.free if k < L]
        if not temporal_free:
          continue
        out_slot = max(temporal_free)
        cur = fidx[i, d]
        cur_row = ds.table[cur]
        for j in ds.neighbors[cur]:
          if j < 0:
            continue
          nrow = ds.table[j]
          dec = np.nonzero(nrow < cur_row)[0]
          if (nrow[out_slot] > cur_row[out_slot] and len(dec)
              and (dec[0] % L) <= lo[i]):
            cands.append((d, j))
      if cands:
        d, j = cands[rng.integers(len(cands))]
        fidx[i, d] = j
    return Genome(fidx, g.order.copy(), g.keep.copy())


def objective_terms(space: RelaxedSpace, params: ArchParams, m: Mapping,
                    r: RelaxedMapping, objective: str = "edp"):
  """Relaxed objective and penalties of one relaxed mapping.

  Returns:
    ``(objective, capacity_penalty, fanout_penalty)``, each ``[]``.  The
    objective is ``log(energy) + log(cycles)`` (edp), ``log(energy)`` or
    ``log(cycles)``; the penalties are squared hinges on the log overflow
    of utilized capacity (sum over data spaces vs ``params.capacity``,
    unbounded levels skipped) and of each fan-out's spatial product: C1,
    zero inside, finite everywhere.
  """
  st = evaluate(space.structure, params, m)
  # take maximum to avoid NaN in gradient of log at 0
  log_e = jnp.log(jnp.maximum(st.energy_total, 1e-30))
  log_c = jnp.log(jnp.maximum(st.cycles, 1e-30))
  obj = {"edp": log_e + log_c, "energy": log_e, "delay": log_c}[objective]
  used = jnp.sum(st.utilized_capacity, axis=1)
  finite = jnp.isfinite(params.capacity)
  # double where: no inf/NaN reaches the log even where capacity is inf
  cap = jnp.where(finite, params.capacity, 1.0)
  over = jnp.log(jnp.maximum(used, 1.0)) - jnp.log(jnp.maximum(cap, 1.0))
  cap_pen = jnp.sum(jnp.where(finite, jnp.maximum(over, 0.0) ** 2, 0.0))
  s = space.structure
  L = s.num_levels
  logf = space.log_factors(r)
  fan_pen = 0.0
  for kind, fan in ((SPATIAL_X, s.fanout_x), (SPATIAL_Y, s.fanout_y)):
    logprod = jnp.sum(logf[:, kind * L:(kind + 1) * L], axis=0)      # [L]
    excess = logprod - np.log(np.maximum(np.asarray(fan, np.float64), 1.0))
    fan_pen = fan_pen + jnp.sum(jnp.maximum(excess, 0.0) ** 2)
  return obj, cap_pen, fan_pen


def make_loss(space: RelaxedSpace, params: ArchParams,
              objective: str = "edp") -> Callable:
  """``loss(r, key, baseline, penalty, gumbel, temperature)`` of one start.

  Returns ``(surrogate, value)``: ``value`` = objective + penalty *
  (capacity + fan-out penalties) at a Plackett-Luce order sample;
  ``surrogate`` adds ``stop_gradient(value - baseline) * log p(order)``, so
  its gradient is the pathwise gradient for factors and keep weights plus
  the score-function (REINFORCE) gradient for the order scores.
  """

  def loss(r, key, baseline, penalty, gumbel, temperature):
    order = space.sample_order(r, key, gumbel)
    m = space.mapping(r, order, temperature)
    obj, cp, fp = objective_terms(space, params, m, r, objective)
    value = obj + penalty * (cp + fp)
    logp = space.order_log_prob(r, order)
    surrogate = value + jax.lax.stop_gradient(value - baseline) * logp
    return surrogate, value

  return loss


# The statistics a capacity repair reads.
REPAIR_STATS = ("valid", "utilized_capacity")


def repair_rounds_loop(space: RelaxedSpace, g: Genome,
                       evaluate: Callable[[Genome], Stats],
                       rng: np.random.Generator, capacity: np.ndarray,
                       rounds: int,
                       budget_left: Optional[Callable[[], int]] = None
                       ) -> np.ndarray:
  """Checks genomes with the exact model and repairs the illegal ones.

  Evaluates all rows of ``g``; then, up to ``rounds`` times, moves one
  prime outward in every illegal row (:meth:`RelaxedSpace.repair`, in
  place in ``g``) and evaluates those rows again.

  Args:
    space: the relaxed space of ``g``'s mapspace.
    g: ``[B]`` genomes (e.g. :meth:`RelaxedSpace.round`); modified.
    evaluate: ``fn(Genome [K]) -> Stats [K]`` (numpy, at least
      :data:`REPAIR_STATS`): the exact model.
    rng: which dim a repair moves.
    capacity: ``[L]`` capacity per level (``ArchParams.capacity``).
    rounds: repair rounds.
    budget_left: ``fn() -> int``: evaluations still allowed (rows beyond it
      are not evaluated); None: no limit.

  Returns:
    Positions of the rows not shown legal (illegal after the last round,
    or cut by the budget).
  """
  todo = np.arange(len(g))
  for k in range(rounds + 1):
    if budget_left is not None:
      todo = todo[:max(0, budget_left())]
    if not len(todo):
      break
    st = evaluate(g.take(todo))
    bad = ~np.asarray(st.valid, bool)
    todo = todo[bad]
    if not len(todo) or k == rounds:
      break
    used = np.asarray(st.utilized_capacity).sum(-1)[bad]
    g.fidx[todo] = space.repair(rng, g.take(todo), used, capacity).fidx
  return todo


def to_mapping(space: RelaxedSpace, r: RelaxedMapping, params: ArchParams,
               *, seed: int = 0, repair_rounds: int = 16,
               evaluator: Optional[Callable] = None) -> Mapping:
  """Nearest legal discrete mappings of a (numpy) batch of relaxed ones:
  :func:`project`, decoded.

  Returns:
    ``[B]`` numpy Mapping batch, all legal.
  """
  return space.ms.decode(project(space, r, params, seed=seed,
                                 repair_rounds=repair_rounds,
                                 evaluator=evaluator))


def project(space: RelaxedSpace, r: RelaxedMapping, params: ArchParams, *,
            seed: int = 0, repair_rounds: int = 16,
            evaluator: Optional[Callable] = None) -> Genome:
  """Nearest legal genomes of a (numpy) batch of relaxed mappings.

  Rounds (:meth:`RelaxedSpace.round`), then repairs capacity overflow with
  outward prime moves checked by the exact model
  (:func:`repair_rounds_loop`); mappings still illegal after
  ``repair_rounds`` are replaced by legal uniform samples of the mapspace.

  Args:
    space: the relaxed space.
    r: ``[B]`` relaxed mappings (leading batch axis).
    params: architecture numbers.
    seed: for repairs and fallback samples.
    repair_rounds: outward-move rounds before falling back.
    evaluator: ``fn(Mapping [K]) -> Stats`` with at least
      :data:`REPAIR_STATS` (default: the exact model, compiled once for
      batches of B).

  Returns:
    ``[B]`` genomes of ``space.ms``, every one legal (``Stats.valid``).

  Raises:
    RuntimeError: no legal mapping found in 64 fallback sample batches.
  """
  ms = space.ms
  n = int(np.shape(r.factor_logits)[0])
  if evaluator is None:
    evaluator = _padded_evaluator(space.structure, params, n)
  rng = np.random.default_rng(seed)
  g = space.round(r)
  todo = repair_rounds_loop(space, g, lambda x: evaluator(ms.decode(x)), rng,
                            np.asarray(params.capacity, np.float64),
                            repair_rounds)
  for _ in range(64):
    if not len(todo):
      break
    cand = ms.sample_genome(rng, len(todo))
    ok = np.asarray(evaluator(ms.decode(cand)).valid, bool)
    idx = todo[ok]
    g.fidx[idx], g.order[idx], g.keep[idx] = (
        cand.fidx[ok], cand.order[ok], cand.keep[ok])
    todo = todo[~ok]
  if len(todo):
    raise RuntimeError(f"no legal mapping found for {len(todo)} points")
  return g


def _padded_evaluator(structure: Structure, params: ArchParams, rows: int):
  """``fn(Mapping [K]) -> numpy Stats [K]`` for ``K <= rows``: pads to
  ``rows`` (one compiled shape) and keeps :data:`REPAIR_STATS`."""
  ev = Evaluator(structure, params, stats=REPAIR_STATS)

  def run(m: Mapping) -> Stats:
    k = int(np.shape(m.temporal)[0])
    out = ev(pad_rows(m, rows))
    return jax.tree.map(lambda a: np.asarray(a)[:k], out)

  return run
