"""Gradient-guided mapping search over the relaxed model (issue #4).

Many starts (:class:`jaxloop.relax.RelaxedMapping`) descend the relaxed
objective together: one jitted optax step vmapped over all starts.  Every
``round_every`` steps all starts are rounded to the nearest mapspace
genomes, repaired against capacity overflow and evaluated with the EXACT
model through the same :class:`~jaxloop.search.driver.Tracker` as the other
searches, so everything reported (best mapping, its numbers, the top-k) is
the exact model's on a legal mapping.  The worst starts (by relaxed
objective) are restarted at random; the penalty weight grows and the
order-sampling noise and keep temperature shrink over the run (annealing).

``hybrid_search`` spends part of the budget on gradient search and hands
its best rounded mappings as seeds to :func:`evolve_search`.

Evaluation counting: ``SearchResult.evaluated`` counts exact evaluations
(rounded mappings and repairs); relaxed forward+backward evaluations are
``result.relaxed_evaluated`` and are in every log row.  ``budget`` bounds
their sum (both are model evaluations).
"""
from __future__ import annotations

import functools
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxloop import relax
from jaxloop.mapspace import Genome, Mapspace
from jaxloop.search.driver import BatchEvaluator, SearchResult, Tracker
from jaxloop.search.objective import Objective, parse_objective
from jaxloop.spec import types as st
from jaxloop.structure import build_params, build_structure

DEFAULT_BUDGET = 100_000


class _Recording:
  """Evaluator wrapper that remembers the last exact Stats batch."""

  def __init__(self, ev: BatchEvaluator):
    self.ev, self.last = ev, None

  def __call__(self, m):
    self.last = self.ev(m)
    return self.last


@functools.lru_cache(maxsize=16)
def _step_fn(space: relax.RelaxedSpace, objective: str, lr: float):
  """Jitted ``step(r, opt_state, baseline, key, params, penalty, gumbel,
  temperature)`` over a batch of starts."""
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


def gradient_search(spec: st.Spec, *, starts: int = 1024, steps: int = 400,
                    lr: float = 0.1, round_every: int = 10,
                    restart_fraction: float = 0.1,
                    time_limit: Optional[float] = None,
                    budget: Optional[int] = None, seed: int = 0,
                    objective: Objective = "edp", batch: int = 4096,
                    victory: Optional[int] = None, topk: int = 10,
                    progress: bool = True, params=None,
                    mapspace: Optional[Mapspace] = None,
                    penalty: tuple[float, float] = (1.0, 100.0),
                    gumbel: tuple[float, float] = (1.0, 0.1),
                    temperature: tuple[float, float] = (1.0, 0.2),
                    repair_rounds: int = 4) -> SearchResult:
  """Batched multi-start gradient descent on the relaxed model.

  Args:
    spec: architecture, problem and constraints.
    starts: number of simultaneous starts (vmapped).
    steps: maximum optimizer steps (also the annealing horizon).
    lr: Adam learning rate.
    round_every: steps between roundings (exact evaluations).
    restart_fraction: share of starts restarted at each rounding (worst
      relaxed objective).
    time_limit: seconds.
    budget: exact + relaxed model evaluations (default 100000 when neither
      budget nor time limit is given).
    seed: numpy/jax seed.
    objective: ``edp``, ``energy``, ``delay`` or a lexicographic list (the
      relaxed loss follows the first metric; the exact ranking uses all).
    batch: exact evaluation batch.
    victory: stop after this many legal exact evaluations without
      improvement.
    topk: distinct best mappings returned.
    progress: tqdm bar (tty only).
    params: ``ArchParams`` overriding the spec's.
    mapspace: prebuilt mapspace.
    penalty, gumbel, temperature: ``(start, end)`` of the geometric
      schedules of the penalty weight, the Gumbel noise scale of the order
      samples and the keep-sigmoid temperature.
    repair_rounds: capacity repair rounds per rounding.

  Returns:
    SearchResult (exact numbers), plus ``relaxed_evaluated``.
  """
  structure = build_structure(spec)
  if params is None:
    params = build_params(spec, structure)
  ms = mapspace if mapspace is not None else Mapspace.from_spec(spec,
                                                                structure)
  names = parse_objective(objective)
  if budget is None and time_limit is None:
    budget = DEFAULT_BUDGET
  space = _space(ms)
  rec = _Recording(BatchEvaluator(structure, params, min(batch, starts)))
  tr = Tracker(ms, rec, names, capacity=max(topk, 64), budget=None,
               time_limit=time_limit, victory=victory, progress=progress,
               desc="gradient")
  rng = np.random.default_rng(seed)
  key = jax.random.PRNGKey(seed)
  jparams = jax.tree.map(jnp.asarray, params)
  opt, step = _step_fn(space, names[0], float(lr))
  r = jax.tree.map(jnp.asarray, space.init(rng, starts))
  opt_state = opt.init(r)
  # A strongly typed float64 (not weak): the step's outputs are, and a
  # weak input would compile the step a second time.
  baseline = jnp.full((starts,), jnp.inf, dtype=jnp.float64)
  cap = np.asarray(params.capacity, np.float64)
  relaxed_evals = 0

  def spent():
    return tr.evaluated + relaxed_evals

  def sched(pair, t):
    a, b = pair
    return float(a * (b / a) ** min(1.0, t / max(steps - 1, 1)))

  t = 0
  value = None
  while t < steps:
    if budget is not None and spent() + starts > budget:
      tr.stop_reason = "budget"
      break
    if tr.should_stop():
      break
    key, sub = jax.random.split(key)
    r, opt_state, baseline, value = step(
        r, opt_state, baseline, sub, jparams, sched(penalty, t),
        sched(gumbel, t), sched(temperature, t))
    relaxed_evals += starts
    t += 1
    if t % round_every and t < steps:
      continue
    # Round, repair, evaluate exactly (everything reported comes from here).
    rnp = jax.tree.map(np.asarray, r)
    g = space.round(rnp)
    todo = np.arange(len(g))
    for k in range(repair_rounds + 1):
      if budget is not None:
        todo = todo[:max(0, budget - spent())]
      if not len(todo):
        break
      sub_g = g.take(todo)
      tr.evaluate(sub_g)
      tr.log[-1]["relaxed_evaluated"] = relaxed_evals
      bad = ~tr.last_valid
      if not bad.any() or k == repair_rounds:
        break
      todo = todo[bad]
      used = np.asarray(rec.last.utilized_capacity).sum(-1)[bad]
      g.fidx[todo] = space.repair(rng, g.take(todo), used, cap).fidx
    # Restart the worst starts (by relaxed objective).
    nre = int(restart_fraction * starts)
    if nre and t < steps:
      v = np.asarray(value)
      worst = np.argsort(-np.where(np.isfinite(v), v, np.inf))[:nre]
      fresh = space.init(rng, nre)
      mask = np.zeros(starts, bool)
      mask[worst] = True
      r = _replace_rows(r, worst, fresh)
      opt_state = jax.tree.map(
          lambda a: jnp.where(_bcast(mask, a), 0.0, a)
          if (hasattr(a, "shape") and a.ndim and a.shape[0] == starts)
          else a, opt_state)
      baseline = jnp.where(mask, jnp.inf, baseline)
  if not tr.stop_reason:
    tr.stop_reason = "steps"
  result = tr.finish(topk)
  result.relaxed_evaluated = relaxed_evals
  for row in result.log:
    row.setdefault("relaxed_evaluated", relaxed_evals)
  return result


def hybrid_search(spec: st.Spec, *, budget: Optional[int] = None,
                  time_limit: Optional[float] = None, seed: int = 0,
                  objective: Objective = "edp", batch: int = 4096,
                  victory: Optional[int] = None, topk: int = 10,
                  progress: bool = True, params=None,
                  mapspace: Optional[Mapspace] = None,
                  gradient_share: float = 0.3, starts: int = 256,
                  steps: int = 100, **gradient_kwargs) -> SearchResult:
  """Gradient search for ``gradient_share`` of the budget/time, then
  :func:`evolve_search` seeded with its best distinct rounded mappings.

  Counts, time and the log cover both phases; the reported mapping and
  numbers are the exact model's.
  """
  from jaxloop.search.searches import evolve_search
  structure = build_structure(spec)
  if params is None:
    params = build_params(spec, structure)
  ms = mapspace if mapspace is not None else Mapspace.from_spec(spec,
                                                                structure)
  if budget is None and time_limit is None:
    budget = DEFAULT_BUDGET
  gb = None if budget is None else int(budget * gradient_share)
  gt = None if time_limit is None else time_limit * gradient_share
  first = gradient_search(spec, starts=starts, steps=steps, budget=gb,
                          time_limit=gt, seed=seed, objective=objective,
                          batch=batch, topk=64, progress=progress,
                          params=params, mapspace=ms, **gradient_kwargs)
  seeds = None
  if first.topk:
    seeds = Genome.concat([ms.encode(m) for _, m, _ in first.topk])
  used = first.evaluated + first.relaxed_evaluated
  second = evolve_search(
      spec, budget=None if budget is None else max(budget - used, 1),
      time_limit=None if time_limit is None else max(
          time_limit - first.elapsed, 0.1),
      seed=seed, objective=objective, batch=batch, victory=victory,
      topk=topk, progress=progress, params=params, mapspace=ms, seeds=seeds)
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
  return second


@functools.lru_cache(maxsize=16)
def _space_cached(ms_id, ms):
  del ms_id
  return relax.RelaxedSpace.from_mapspace(ms)


def _space(ms: Mapspace) -> relax.RelaxedSpace:
  return _space_cached(id(ms), ms)


def _bcast(mask: np.ndarray, a) -> np.ndarray:
  return mask.reshape((-1,) + (1,) * (a.ndim - 1))


def _replace_rows(r, idx, fresh):
  return jax.tree.map(lambda a, b: a.at[idx].set(jnp.asarray(b)), r, fresh)
