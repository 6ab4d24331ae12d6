"""Co-design by gradient: buffer sizes and bandwidths together with the
layers' mappings, through the one model and the built-in estimator.

The architecture knobs are continuous: ``theta[K]``, the log of each knob
(``COMPONENT.depth``, ``COMPONENT.read_bandwidth``,
``COMPONENT.write_bandwidth``).  :func:`knob_params` turns ``theta`` into
``ArchParams`` as a traceable function: a depth sets the level's capacity
(``depth * block_size / multiple_buffering``) and, without an ERT, its
energies and area from :func:`jaxloop.estimate.tables.level_actions` (the
estimator's smooth models of size); a bandwidth sets the bandwidth.  The
mappings are relaxed (:mod:`jaxloop.relax`, the model's relaxed mode).

Each step descends, for every layer, its relaxed mappings' surrogate
(objective + capacity/fan-out penalties, REINFORCE for loop orders, as in
:mod:`jaxloop.mapper.gradient`) and ``theta`` along the sum over layers
(repeat-weighted) of a soft minimum over each layer's starts.  Every
``round_every`` steps ``theta`` is rounded to a legal architecture (depths
to powers of two, bandwidths to integers, within the bounds), the point is
loaded from the files as a sweep point, the mappings are rounded and
repaired to legal ones (:func:`jaxloop.relax.repair_rounds_loop`) and the
network is evaluated exactly; the best legal point is kept.  The final
point's layers are searched again with the sweep's search
(:func:`jaxloop.sweep.search.search_points`), the better mapping kept.
"""
from __future__ import annotations

import dataclasses
import math
import time
from typing import Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxloop import relax
from jaxloop.errors import SpecError
from jaxloop.mapper.gradient import relaxed_space
from jaxloop.precision import exact
from jaxloop.sweep.arch import point_workload
from jaxloop.sweep.layers import Layer
from jaxloop.sweep.search import SearchSettings, search_points

KNOB_ATTRIBUTES = ("depth", "read_bandwidth", "write_bandwidth")


@dataclasses.dataclass(frozen=True)
class Knob:
  """``name`` (``COMPONENT.ATTRIBUTE``), its storage level's index and the
  legal range ``[low, high]``."""
  name: str
  level: int
  low: float
  high: float

  @property
  def attribute(self) -> str:
    return self.name.rpartition(".")[2]

  def legal(self, value: float) -> int:
    """Nearest legal value: depths a power of two, bandwidths integers,
    inside the range."""
    v = min(max(float(value), self.low), self.high)
    if self.attribute == "depth":
      return int(2 ** round(math.log2(v)))
    return max(1, int(round(v)))


def make_knobs(wl, bounds: dict) -> list[Knob]:
  """Knobs of ``wl``'s architecture from ``{name: (low, high)}``.

  Raises:
    SpecError: an unknown component or an attribute that is not a knob.
  """
  out = []
  names = wl.structure.level_names
  for name, (low, high) in bounds.items():
    comp, _, attr = name.rpartition(".")
    if comp not in names or attr not in KNOB_ATTRIBUTES:
      raise SpecError(
          f"co-design knob '{name}' is not COMPONENT.{{"
          f"{','.join(KNOB_ATTRIBUTES)}}} of a storage level",
          path=name, hint="Storage levels: " + ", ".join(names))
    out.append(Knob(name, names.index(comp), float(low), float(high)))
  return out


def knob_params(wl, knobs: Sequence[Knob]):
  """``fn(theta [K]) -> ArchParams``: ``wl``'s params with the knobs set to
  ``exp(theta)`` (traceable; see the module docstring)."""
  from jaxloop.estimate.compound import Estimator
  from jaxloop.estimate.tables import compound_definitions, level_actions
  spec, base = wl.spec, jax.tree.map(jnp.asarray, wl.params)
  estimated = spec.ert is None
  est = Estimator(compound_definitions(spec.sources), ", ".join(spec.sources))
  storage = {l.name: l for l in spec.arch.storage}

  def fn(theta):
    p = base
    for k, knob in enumerate(knobs):
      v = jnp.exp(theta[k])
      lvl = storage[wl.structure.level_names[knob.level]]
      i = knob.level
      if knob.attribute != "depth":
        p = dataclasses.replace(p, **{knob.attribute: getattr(
            p, knob.attribute).at[i].set(v)})
        continue
      cap = v * lvl.block_size / max(lvl.multiple_buffering, 1e-30)
      p = dataclasses.replace(p, capacity=p.capacity.at[i].set(cap))
      if estimated:
        acts, area = level_actions(spec, lvl, est, {"depth": v})
        p = dataclasses.replace(
            p, read_energy=p.read_energy.at[i].set(acts["read"]),
            fill_energy=p.fill_energy.at[i].set(acts["write"]),
            update_energy=p.update_energy.at[i].set(acts["update"]),
            leak_energy=p.leak_energy.at[i].set(acts["leak"]),
            area=p.area.at[i].set(area))
    return p

  return fn


def _layer_step(space: relax.RelaxedSpace, fn, metric: str):
  """Jitted ``(theta, r[S], keys[S], baseline[S], penalty, gumbel, temp) ->
  ((total, values[S]), (d theta, d r))`` of one layer: each start's
  surrogate, weighted by a soft minimum over the starts (stopped
  gradient), so ``theta`` follows the layer's good mappings."""

  def total(theta, r, keys, baseline, penalty, gumbel, temp):
    loss = relax.make_loss(space, fn(theta), metric)
    sur, val = jax.vmap(loss, in_axes=(0, 0, 0, None, None, None))(
        r, keys, baseline, penalty, gumbel, temp)
    val = jnp.where(jnp.isfinite(val), val, 1e30)
    alpha = jax.lax.stop_gradient(jax.nn.softmax(-val))
    return jnp.sum(alpha * sur) * val.shape[0], val

  grad = jax.value_and_grad(total, argnums=(0, 1), has_aux=True)

  def step(*args):
    out, grads = grad(*args)
    grads = jax.tree.map(lambda g: jnp.where(jnp.isfinite(g), g, 0.0), grads)
    return out, grads

  return jax.jit(step)


@dataclasses.dataclass
class CodesignResult:
  """The best legal point found.

  Attributes:
    knobs: ``{name: legal value}``.
    energy_pj, cycles, edp: network totals (exact model, legal mappings).
    layers: per layer ``{"layer", "repeat", "energy_pj", "cycles", "edp",
      "valid"}``.
    history: per rounding ``{"step", "seconds", "theta": {name: value},
      "knobs": {name: legal value}, "edp"}``.
    seconds: wall time.
  """
  knobs: dict
  energy_pj: float
  cycles: float
  edp: float
  layers: list
  history: list
  seconds: float


class _Layers:
  """Each layer's relaxed space, starts, Adam state and baseline."""

  def __init__(self, wls, fn, metric, starts, lr, rng):
    self.spaces = [relaxed_space(wl.mapspace) for wl in wls]
    self.steps = [_layer_step(s, fn, metric) for s in self.spaces]
    self.opt = optax.adam(lr)
    self.r = [jax.tree.map(jnp.asarray, s.init(rng, starts))
              for s in self.spaces]
    self.state = [self.opt.init(r) for r in self.r]
    self.baseline = [jnp.full((starts,), jnp.inf, jnp.float64)
                     for _ in self.spaces]

  def step(self, l, theta, key, schedule):
    n = self.baseline[l].shape[0]
    (_, val), (g_theta, g_r) = self.steps[l](
        theta, self.r[l], jax.random.split(key, n), self.baseline[l],
        *schedule)
    upd, self.state[l] = self.opt.update(g_r, self.state[l], self.r[l])
    self.r[l] = optax.apply_updates(self.r[l], upd)
    b = self.baseline[l]
    self.baseline[l] = jnp.where(jnp.isfinite(b), 0.8 * b + 0.2 * val, val)
    return g_theta


def _exact_rows(wl, params, rows: int):
  """``fn(Mapping [K<=rows]) -> numpy Stats``: the exact model on
  ``params`` (padded to ``rows``: one compiled shape)."""
  from jaxloop.evaluator import Evaluator
  from jaxloop.model.blocks import pad_rows
  ev = Evaluator(wl.structure, params, stats=(
      "valid", "utilized_capacity", "energy_total", "cycles"))

  def run(m):
    k = int(np.shape(m.temporal)[0])
    return jax.tree.map(lambda a: np.asarray(a)[:k], ev(pad_rows(m, rows)))

  return run


def _best_legal(space, r, wl, params, rng, metric):
  """Rounded and repaired mappings of a layer's starts, evaluated exactly:
  ``(energy, cycles, genome)`` of the best legal one, or None."""
  ev = _exact_rows(wl, params, int(np.shape(r.factor_logits)[0]))
  g = space.round(jax.tree.map(np.asarray, r))
  relax.repair_rounds_loop(space, g, lambda x: ev(space.ms.decode(x)), rng,
                           np.asarray(params.capacity, np.float64), 8)
  st = ev(space.ms.decode(g))
  e, c = np.asarray(st.energy_total), np.asarray(st.cycles)
  key = {"edp": e * c, "energy": e, "delay": c}[metric]
  key = np.where(st.valid, key, np.inf)
  i = int(np.argmin(key))
  return None if not np.isfinite(key[i]) else (float(e[i]), float(c[i]),
                                               g.take(slice(i, i + 1)))


def _network(per_layer, layers):
  e = sum(x[0] * l.repeat for x, l in zip(per_layer, layers))
  c = sum(x[1] * l.repeat for x, l in zip(per_layer, layers))
  return e, c, e * 1e-12 * c


def _schedule(pairs, t, steps):
  f = min(1.0, t / max(steps - 1, 1))
  return tuple(float(a * (b / a) ** f) for a, b in pairs)


@exact
def codesign(arch_files: Sequence[str], layers: Sequence[Layer],
             bounds: dict, *, point: Optional[dict] = None, starts: int = 32,
             steps: int = 200, lr: float = 0.1, theta_lr: float = 0.05,
             round_every: int = 20, time_limit: Optional[float] = None,
             seed: int = 0, metric: str = "edp", final_budget: int = 4096,
             penalty=(1.0, 100.0), gumbel=(1.0, 0.1),
             temperature=(1.0, 0.2), progress=None) -> CodesignResult:
  """Joint gradient descent of architecture knobs and relaxed mappings.

  Args:
    arch_files: architecture inputs (as for a sweep).
    layers: the distinct layers (repeat counts weight them).
    bounds: ``{"COMPONENT.depth": (low, high), ...}`` knobs and ranges.
    point: fixed template variables / attributes (a sweep point).
    starts: relaxed mappings per layer.
    steps, lr, theta_lr: descent length and Adam rates (mappings, knobs).
    round_every: steps between exact evaluations of the rounded point.
    time_limit: seconds for the descent (the final search comes after).
    metric: ``edp``, ``energy`` or ``delay`` (per layer and network).
    final_budget: evaluations per layer of the final point's search.
    penalty, gumbel, temperature: the relaxed search's schedules.
  """
  t0 = time.perf_counter()
  point = dict(point or {})
  wls = [point_workload(arch_files, l.path, point) for l in layers]
  knobs = make_knobs(wls[0], bounds)
  fn = knob_params(wls[0], knobs)
  rng = np.random.default_rng(seed)
  state = _Layers(wls, fn, metric, starts, lr, rng)
  theta = jnp.asarray([math.log(min(max(_current(wls[0], k), k.low), k.high))
                       for k in knobs])
  lo = jnp.log(jnp.asarray([k.low for k in knobs]))
  hi = jnp.log(jnp.asarray([k.high for k in knobs]))
  t_opt = optax.adam(theta_lr)
  t_state = t_opt.init(theta)
  key = jax.random.PRNGKey(seed)
  best, history = None, []
  for t in range(steps):
    sched = _schedule((penalty, gumbel, temperature), t, steps)
    grad = jnp.zeros_like(theta)
    for l, layer in enumerate(layers):
      key, sub = jax.random.split(key)
      grad = grad + layer.repeat * state.step(l, theta, sub, sched)
    upd, t_state = t_opt.update(grad, t_state, theta)
    theta = jnp.clip(optax.apply_updates(theta, upd), lo, hi)
    out_of_time = time_limit is not None and \
        time.perf_counter() - t0 > time_limit
    if (t + 1) % round_every and t + 1 < steps and not out_of_time:
      continue
    found = _evaluate_point(arch_files, layers, point, knobs, theta, state,
                            rng, metric)
    history.append({"step": t + 1, "seconds": time.perf_counter() - t0,
                    "theta": {k.name: float(math.exp(v))
                              for k, v in zip(knobs, np.asarray(theta))},
                    **found[0], **found[1]})
    if progress:
      progress(history[-1])
    if best is None or found[1]["edp"] < best[1]["edp"]:
      best = found
    if out_of_time:
      break
  return _finish(arch_files, layers, point, best, history, metric,
                 final_budget, seed, t0)


def _current(wl, knob: Knob) -> float:
  lvl = next(l for l in wl.spec.arch.storage
             if l.name == wl.structure.level_names[knob.level])
  if knob.attribute == "depth":
    return float(lvl.depth)
  v = float(getattr(wl.params, knob.attribute)[knob.level])
  return v if np.isfinite(v) else knob.high


def _evaluate_point(arch_files, layers, point, knobs, theta, state, rng,
                    metric):
  """``({"knobs": legal values}, {"edp": network EDP...}, per layer)``
  of the rounded point (EDP inf when a layer has no legal mapping)."""
  legal = {k.name: k.legal(math.exp(v))
           for k, v in zip(knobs, np.asarray(theta))}
  per = []
  for l, layer in enumerate(layers):
    wl = point_workload(arch_files, layer.path, {**point, **legal})
    per.append(_best_legal(state.spaces[l], state.r[l], wl, wl.params, rng,
                           metric))
  if any(p is None for p in per):
    return {"knobs": legal}, {"edp": math.inf}, per
  e, c, edp = _network(per, layers)
  return {"knobs": legal}, {"edp": edp, "energy_pj": e, "cycles": c}, per


def _finish(arch_files, layers, point, best, history, metric, budget, seed,
            t0) -> CodesignResult:
  """The best rounded point's layers searched again (the sweep's search,
  ``budget`` per layer); per layer the better of that and the rounded
  gradient mapping."""
  from jaxloop.mapper.objective import parse_objective
  legal = best[0]["knobs"]
  settings = SearchSettings(budget=budget, points_per_call=1, seed=seed,
                            objective=parse_objective(metric))
  per, rows = [], []
  for l, layer in enumerate(layers):
    wl = point_workload(arch_files, layer.path, {**point, **legal})
    _, st = search_points(wl.mapspace, [wl.params], [0], l, settings,
                          (jax.local_devices()[0],))
    cand = [(float(st.energy_total[0]), float(st.cycles[0]))] \
        if st.valid[0] else []
    if best[2][l] is not None:
      cand.append(best[2][l][:2])
    score = {"edp": lambda x: x[0] * x[1], "energy": lambda x: x[0],
             "delay": lambda x: x[1]}[metric]
    e, c = min(cand, key=score)
    per.append((e, c))
    rows.append({"layer": layer.name, "repeat": layer.repeat,
                 "energy_pj": e, "cycles": c, "edp": e * 1e-12 * c,
                 "valid": True})
  e, c, edp = _network(per, layers)
  return CodesignResult(knobs=legal, energy_pj=e, cycles=c, edp=edp,
                        layers=rows, history=history,
                        seconds=time.perf_counter() - t0)
