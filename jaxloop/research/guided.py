"""Surrogate-guided mapping search: gradients through a learned model.

Mind Mappings' recipe on jaxloop's relaxation (:mod:`jaxloop.relax`): a
batch of relaxed mappings (softmax factor splits per dim, loop-order
scores, keep logits) descends the surrogate's predicted ``ln EDP`` minus
``validity_weight`` times the log-probability it gives to validity.  The
loop order enters through soft positions (``pos[l, d] = sum over d' of
sigmoid((score[l, d'] - score[l, d]) / order_temperature)``, the expected
number of loops inside d), so the whole objective is differentiable.
Every ``round_every`` steps all starts are rounded to the nearest
mapspace genomes, repaired against capacity overflow and evaluated by the
exact model (:class:`jaxloop.mapper.driver.Tracker`): every reported
number is exact, on a legal mapping.  The worst starts by predicted
objective are then restarted.
"""
from __future__ import annotations

import functools
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxloop import relax
from jaxloop.mapper.driver import SEARCH_STATS, SearchResult, Tracker
from jaxloop.mapper.gradient import relaxed_space
from jaxloop.mapspace import SPATIAL_X, SPATIAL_Y, TEMPORAL
from jaxloop.precision import exact
from jaxloop.research import features
from jaxloop.research.surrogate import Surrogate


def soft_positions(space: relax.RelaxedSpace, r: relax.RelaxedMapping,
                   temperature: float) -> jax.Array:
  """``[L, D]`` expected loop position of each dim (0 innermost): higher
  scores are more inner, the fixed prefix innermost (its bias),
  storage-less levels in dim order."""
  s = jnp.where(space.free_order, r.order_scores, 0.0) + space.prefix_bias
  diff = (s[:, None, :] - s[:, :, None]) / temperature      # [L, d, d']
  pos = jnp.sum(jax.nn.sigmoid(diff), axis=-1) - 0.5        # self term
  D = s.shape[-1]
  dummy = np.asarray(space.structure.is_dummy)[:, None]
  return jnp.where(dummy, jnp.arange(D, dtype=pos.dtype), pos)


def relaxed_inputs(space: relax.RelaxedSpace, context: jax.Array,
                   r: relax.RelaxedMapping, temperature: float) -> jax.Array:
  """``f32[F]`` surrogate input of one relaxed mapping: its encoded
  planes (:func:`features.encode_planes`) and the layer/arch
  ``context``."""
  L = space.structure.num_levels
  lf = space.log_factors(r) / np.log(2.0)                   # [D, 3L]
  plane = lambda kind: lf[:, kind * L:(kind + 1) * L].T     # [L, D]
  enc = features.encode_planes(
      plane(TEMPORAL), plane(SPATIAL_X), plane(SPATIAL_Y),
      soft_positions(space, r, temperature), space.keep_soft(r))
  return jnp.concatenate([enc, context])


@functools.lru_cache(maxsize=8)
def _step_fn(space: relax.RelaxedSpace, config, lr: float):
  """``(optimizer, jitted step(weights, r, opt_state, context, weight,
  temperature) -> (r, opt_state, objective [B]))``; ``weights`` are a
  :class:`Surrogate`'s arrays (:func:`_weights`), ``config`` its static
  :class:`SurrogateConfig`."""
  opt = optax.adam(lr)

  def objective(weights, r, context, weight, temperature):
    model = Surrogate(config, *weights)
    p = model.predict(relaxed_inputs(space, context, r, temperature))
    return p[0] + p[1] - weight * jax.nn.log_sigmoid(p[2])

  def step(weights, r, opt_state, context, weight, temperature):
    value, grads = jax.vmap(jax.value_and_grad(objective, argnums=1),
                            in_axes=(None, 0, None, None, None))(
        weights, r, context, weight, temperature)
    grads = jax.tree.map(lambda g: jnp.where(jnp.isfinite(g), g, 0.0), grads)
    updates, opt_state = opt.update(grads, opt_state, r)
    return optax.apply_updates(r, updates), opt_state, value

  return opt, jax.jit(step)


def _weights(model: Surrogate) -> tuple:
  return (model.params, model.x_mean, model.x_std, model.y_mean,
          model.y_std)


@exact
def surrogate_search(workload, model: Surrogate, *,
                     time_limit: Optional[float] = None,
                     budget: Optional[int] = None, seed: int = 0,
                     starts: int = 256, steps_per_round: int = 20,
                     lr: float = 0.05, validity_weight: float = 1.0,
                     order_temperature: float = 0.5,
                     restart_fraction: float = 0.25, repair_rounds: int = 4,
                     topk: int = 10, progress: bool = False) -> SearchResult:
  """Surrogate-guided search for the lowest EDP (module docstring).

  Args:
    workload: a :class:`jaxloop.Workload`.
    model: a trained :class:`~jaxloop.research.surrogate.Surrogate`.
    time_limit, budget: stop after these seconds / exact evaluations
      (give at least one).
    starts: relaxed mappings descending together (vmapped).
    steps_per_round: Adam steps between roundings.
    lr, validity_weight, order_temperature: step size, weight of the
      predicted validity, softness of the loop positions.
    restart_fraction: starts restarted after each rounding (worst
      predicted objective first).
    repair_rounds: capacity repairs per rounding (exact model).

  Returns:
    A :class:`SearchResult` (method ``surrogate``); exact numbers only.

  Raises:
    SpecError: neither ``time_limit`` nor ``budget``.
  """
  from jaxloop.errors import SpecError
  if time_limit is None and budget is None:
    raise SpecError("surrogate search needs a time limit or a budget",
                    path="time_limit", hint="Pass time_limit= or budget=.")
  tr = Tracker(workload, "edp", desc="surrogate", capacity=max(topk, 64),
               batch=starts, budget=budget, time_limit=time_limit,
               progress=progress,
               stats=SEARCH_STATS + ("utilized_capacity",))
  space = relaxed_space(workload.mapspace)
  layer, arch = features.workload_features(workload)
  context = jnp.asarray(np.concatenate([layer, arch]), jnp.float32)
  opt, step = _step_fn(space, model.config, float(lr))
  weights = jax.tree.map(jnp.asarray, _weights(model))
  rng = np.random.default_rng(seed)
  r = jax.tree.map(jnp.asarray, space.init(rng, starts))
  opt_state = opt.init(r)
  capacity = np.asarray(workload.params.capacity, np.float64)

  def evaluate(g):
    tr.evaluate(g)
    return tr.last_stats

  while not tr.should_stop():
    for _ in range(steps_per_round):
      r, opt_state, value = step(weights, r, opt_state, context,
                                 float(validity_weight),
                                 float(order_temperature))
    relax.repair_rounds_loop(space, space.round(jax.tree.map(np.asarray, r)),
                             evaluate, rng, capacity, repair_rounds,
                             tr.allowance)
    r, opt_state = _restart_worst(space, rng, r, opt_state,
                                  np.asarray(value), restart_fraction)
  return tr.finish(topk)


def _restart_worst(space: relax.RelaxedSpace, rng: np.random.Generator,
                   r, opt_state, value: np.ndarray, fraction: float):
  """``(r, opt_state)`` with the ``fraction`` of starts of highest
  ``value [B]`` at fresh random points and a zeroed Adam state."""
  n = len(value)
  worst = np.argsort(-np.where(np.isfinite(value), value, np.inf))[
      :int(fraction * n)]
  if not len(worst):
    return r, opt_state
  fresh = space.init(rng, len(worst))
  r = jax.tree.map(lambda a, b: a.at[worst].set(jnp.asarray(b, a.dtype)),
                   r, fresh)
  mask = np.zeros(n, bool)
  mask[worst] = True

  def reset(a):
    if not (hasattr(a, "shape") and a.ndim and a.shape[0] == n):
      return a
    return jnp.where(mask.reshape((n,) + (1,) * (a.ndim - 1)), 0.0, a)

  return r, jax.tree.map(reset, opt_state)
