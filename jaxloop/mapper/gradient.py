"""Gradient-guided mapping search over the relaxed model.

Many starts (:class:`jaxloop.relax.RelaxedMapping`) descend the relaxed
objective together: one jitted optax step vmapped over all starts.  Every
``round_every`` steps all starts are rounded to the nearest mapspace
genomes, repaired against capacity overflow and evaluated with the EXACT
model through the same :class:`~jaxloop.mapper.driver.Tracker` as the other
searches, so everything reported (best mapping, its numbers, the top-k) is
the exact model's on a legal mapping.  The worst starts (by relaxed
objective) are restarted at random; the penalty weight grows and the
order-sampling noise and keep temperature shrink over the run (annealing).

:func:`hybrid_search` spends part of the budget on gradient search and
hands its best rounded mappings as seeds to
:func:`~jaxloop.mapper.searches.evolve_search`.

Evaluation counting: ``SearchResult.evaluated`` counts exact evaluations
(rounded mappings and repairs); relaxed forward+backward evaluations are
``result.relaxed_evaluated`` and are in every log row.  ``budget`` bounds
their sum (both are model evaluations).
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxloop import relax
from jaxloop.mapspace import Genome, Mapspace
from jaxloop.precision import exact
from jaxloop.mapper.driver import (SEARCH_STATS, SearchResult, Tracker,
                                   require_limit)
from jaxloop.mapper.objective import Objective
from jaxloop.mapper.rules import StopRules
from jaxloop.mapper.searches import evolve_search


@functools.lru_cache(maxsize=16)
def relaxed_space(ms: Mapspace) -> relax.RelaxedSpace:
  """The relaxation of ``ms`` (cached: the compiled step is keyed by it)."""
  return relax.RelaxedSpace.from_mapspace(ms)


@functools.lru_cache(maxsize=16)
def _step_fn(space: relax.RelaxedSpace, objective: str, lr: float):
  """``(optimizer, jitted step(r, opt_state, baseline, key, params,
  penalty, gumbel, temperature))`` over a batch of starts."""
  opt = optax.adam(lr)

  def step(r, opt_state, baseline, key, params, penalty, gumbel, temp):
    loss = relax.make_loss(space, params, objective)
    n = baseline.shape[0]
    keys = jax.random.split(key, n)
    grad_fn = jax.vmap(jax.value_and_grad(loss, has_aux=True),
                       in_axes=(0, 0, 0, None, None, None))
    (_, value), grads = grad_fn(r, keys, baseline, penalty, gumbel, temp)
    # Guard: a non-finite gradient (should not happen) does not move a start.
    grads = jax.tree.map(lambda g: jnp.where(jnp.isfinite(g), g, 0.0), grads)
    updates, opt_state = opt.update(grads, opt_state, r)
    r = optax.apply_updates(r, updates)
    baseline = jnp.where(jnp.isfinite(baseline), 0.8 * baseline + 0.2 * value,
                         value)
    return r, opt_state, baseline, value

  return opt, jax.jit(step)


class _Descent:
  """The starts under descent: parameters, Adam state, the REINFORCE
  baseline of each start and the annealing schedules.

  Args:
    space: the relaxed space.
    params: ``ArchParams`` the relaxed model reads.
    metric: the relaxed loss's metric (``edp``, ``energy`` or ``delay``).
    rng: draws the starting points and restarts.
    seed: seeds the JAX key of the order samples.
    starts, steps, lr: batch of starts, annealing horizon, learning rate.
    schedules: ``(start, end)`` pairs of the penalty weight, the Gumbel
      noise scale and the keep temperature (geometric over ``steps``).
  """

  def __init__(self, space: relax.RelaxedSpace, params, metric: str,
               rng: np.random.Generator, seed: int, starts: int, steps: int,
               lr: float, schedules: tuple):
    self.space, self.rng, self.starts, self.steps = space, rng, starts, steps
    self.params = jax.tree.map(jnp.asarray, params)
    self.schedules = schedules
    self.opt, self._step = _step_fn(space, metric, float(lr))
    self.key = jax.random.PRNGKey(seed)
    self.r = jax.tree.map(jnp.asarray, space.init(rng, starts))
    self.opt_state = self.opt.init(self.r)
    # A strongly typed float64 (not weak): the step's outputs are, and a
    # weak input would compile the step a second time.
    self.baseline = jnp.full((starts,), jnp.inf, dtype=jnp.float64)
    self.value = None
    self.evaluated = 0

  def _annealed(self, pair, t: int) -> float:
    a, b = pair
    return float(a * (b / a) ** min(1.0, t / max(self.steps - 1, 1)))

  def step(self, t: int) -> None:
    """Optimizer step ``t`` (0-based) of all starts."""
    self.key, sub = jax.random.split(self.key)
    penalty, gumbel, temperature = (self._annealed(p, t)
                                    for p in self.schedules)
    self.r, self.opt_state, self.baseline, self.value = self._step(
        self.r, self.opt_state, self.baseline, sub, self.params, penalty,
        gumbel, temperature)
    self.evaluated += self.starts

  def rounded(self) -> Genome:
    """The starts rounded to the nearest genomes of the mapspace."""
    return self.space.round(jax.tree.map(np.asarray, self.r))

  def restart_worst(self, fraction: float) -> None:
    """Restarts ``fraction`` of the starts, those of the worst relaxed
    objective, at fresh random points (fresh Adam state and baseline)."""
    nre = int(fraction * self.starts)
    if not nre:
      return
    v = np.asarray(self.value)
    worst = np.argsort(-np.where(np.isfinite(v), v, np.inf))[:nre]
    fresh = self.space.init(self.rng, nre)
    mask = np.zeros(self.starts, bool)
    mask[worst] = True
    self.r = jax.tree.map(lambda a, b: a.at[worst].set(jnp.asarray(b)),
                          self.r, fresh)
    self.opt_state = jax.tree.map(
        lambda a: jnp.where(_bcast(mask, a), 0.0, a)
        if (hasattr(a, "shape") and a.ndim and a.shape[0] == self.starts)
        else a, self.opt_state)
    self.baseline = jnp.where(mask, jnp.inf, self.baseline)


@exact
def gradient_search(workload, *, objective: Objective = "edp",
                    budget: Optional[int] = None,
                    time_limit: Optional[float] = None, seed: int = 0,
                    topk: int = 10, progress: bool = True,
                    batch: int = 4096, rules: StopRules = StopRules(),
                    params=None, starts: int = 1024, steps: int = 400,
                    lr: float = 0.1, round_every: int = 10,
                    restart_fraction: float = 0.1,
                    penalty: tuple[float, float] = (1.0, 100.0),
                    gumbel: tuple[float, float] = (1.0, 0.1),
                    temperature: tuple[float, float] = (1.0, 0.2),
                    repair_rounds: int = 4) -> SearchResult:
  """Batched multi-start gradient descent on the relaxed model.

  Common arguments as in :mod:`jaxloop.mapper.searches`; ``budget`` bounds
  exact + relaxed evaluations; ``batch`` is the exact evaluation batch; the
  relaxed loss follows the first metric of ``objective`` (the exact ranking
  uses all).  Stops after ``steps`` steps at the latest; a run stopped
  between roundings rounds and evaluates its starts once more (within what
  is left of the budget).

  Args:
    starts: number of simultaneous starts (vmapped).
    steps: maximum optimizer steps (also the annealing horizon).
    lr: Adam learning rate.
    round_every: steps between roundings (exact evaluations).
    restart_fraction: share of starts restarted at each rounding (worst
      relaxed objective).
    penalty, gumbel, temperature: ``(start, end)`` of the geometric
      schedules of the penalty weight, the Gumbel noise scale of the order
      samples and the keep-sigmoid temperature.
    repair_rounds: capacity repair rounds per rounding.

  Returns:
    SearchResult (exact numbers) with ``relaxed_evaluated``.
  """
  tr = Tracker(workload, objective, desc="gradient", capacity=max(topk, 64),
               batch=min(batch, starts), budget=budget,
               time_limit=time_limit, rules=rules, progress=progress,
               params=params,
               stats=SEARCH_STATS + ("utilized_capacity",))   # for repairs
  params = workload.params if params is None else params
  rng = np.random.default_rng(seed)
  descent = _Descent(relaxed_space(workload.mapspace), params, tr.names[0],
                     rng, seed, starts, steps, lr,
                     (penalty, gumbel, temperature))
  capacity = np.asarray(params.capacity, np.float64)
  unrounded = False             # steps taken since the last rounding
  for t in range(steps):
    if tr.should_stop():
      break
    if tr.remaining() is not None and tr.remaining() < starts:
      tr.stop_reason = "budget"
      break
    descent.step(t)
    tr.relaxed_evaluated = descent.evaluated
    unrounded = bool((t + 1) % round_every) and t + 1 < steps
    if unrounded:
      continue
    _evaluate_rounded(tr, descent, rng, capacity, repair_rounds)
    if t + 1 < steps:
      descent.restart_worst(restart_fraction)
  if unrounded:                 # stopped early: what the last steps reached
    _evaluate_rounded(tr, descent, rng, capacity, repair_rounds)
  tr.stop_reason = tr.stop_reason or "steps"
  return tr.finish(topk)


def _evaluate_rounded(tr: Tracker, descent: _Descent, rng, capacity,
                      repair_rounds: int) -> None:
  """Rounds all starts, repairs and evaluates them exactly through ``tr``
  (everything a gradient search reports comes from here), within the
  budget."""

  def evaluate(g: Genome):
    tr.evaluate(g)
    return tr.last_stats

  relax.repair_rounds_loop(
      descent.space, descent.rounded(), evaluate, rng, capacity,
      repair_rounds, tr.allowance)


@exact
def hybrid_search(workload, *, objective: Objective = "edp",
                  budget: Optional[int] = None,
                  time_limit: Optional[float] = None, seed: int = 0,
                  topk: int = 10, progress: bool = True, batch: int = 4096,
                  rules: StopRules = StopRules(), params=None,
                  gradient_share: float = 0.3, starts: int = 256,
                  steps: int = 100, **gradient_options) -> SearchResult:
  """:func:`gradient_search` for ``gradient_share`` of the budget/time, then
  :func:`~jaxloop.mapper.searches.evolve_search` seeded with its best
  distinct rounded mappings.

  Needs a budget or a time limit.  ``starts``, ``steps`` and
  ``gradient_options`` (any other :func:`gradient_search` option) shape the
  gradient phase.  Counts, time and the log cover both phases; the reported
  mapping and numbers are the exact model's.
  """
  require_limit("hybrid", budget, time_limit, rules)
  common = dict(objective=objective, seed=seed, progress=progress,
                batch=batch, params=params)
  first = gradient_search(
      workload, budget=None if budget is None else int(budget *
                                                       gradient_share),
      time_limit=None if time_limit is None else time_limit * gradient_share,
      topk=64, starts=starts, steps=steps, **common, **gradient_options)
  seeds = None
  if first.topk:
    seeds = Genome.concat([workload.mapspace.encode(m)
                           for _, m, _ in first.topk])
  used = first.evaluated + first.relaxed_evaluated
  if rules.search_size:
    rules = dataclasses.replace(
        rules, search_size=max(rules.search_size - first.legal, 1))
  second = evolve_search(
      workload, budget=None if budget is None else max(budget - used, 1),
      time_limit=None if time_limit is None else max(
          time_limit - first.elapsed, 0.1),
      rules=rules, topk=topk, seeds=seeds, **common)
  result = _chained(first, second)
  result.budget, result.time_limit = budget, time_limit
  return result


def _chained(first: SearchResult, second: SearchResult) -> SearchResult:
  """``second`` continued from ``first``: counts, times and logs added up,
  and ``first``'s best where it is better."""
  for row in second.log:
    row["time_s"] = round(row["time_s"] + first.elapsed, 4)
    row["evaluated"] += first.evaluated
    row["legal"] += first.legal
    row["relaxed_evaluated"] = first.relaxed_evaluated
  if first.best_objective is not None and (
      second.best_objective is None
      or tuple(first.best_objective) < tuple(second.best_objective)):
    second.best_mapping, second.best_stats = (first.best_mapping,
                                              first.best_stats)
    second.best_objective = first.best_objective
  second.log = first.log + second.log
  second.evaluated += first.evaluated
  second.legal += first.legal
  second.elapsed += first.elapsed
  second.relaxed_evaluated = first.relaxed_evaluated
  second.method = "hybrid"
  return second


def _bcast(mask: np.ndarray, a) -> np.ndarray:
  return mask.reshape((-1,) + (1,) * (a.ndim - 1))
