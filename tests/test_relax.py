"""The relaxed model and gradient search."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxloop import api, relax
from jaxloop.evaluator import evaluator
from jaxloop.mapper import gradient as gmod
from jaxloop.mapper import search
from jaxloop.types import Mapping
from jaxloop.validate import case_files

from support import random_mappings, reference_cases

CASES = reference_cases()
FIELDS = ("reads", "fills", "updates", "temporal_reductions",
          "utilized_capacity", "utilized_instances", "energy", "cycles",
          "energy_total", "computes", "valid", "capacity_ok", "fanout_ok",
          "factors_ok")


def _load(reference, name):
  case = next(c for c in CASES if c["name"] == name)
  return api.load(*case_files(reference, case))


def _as_float(m):
  return Mapping(temporal=np.asarray(m.temporal, np.float64),
                 spatial_x=np.asarray(m.spatial_x, np.float64),
                 spatial_y=np.asarray(m.spatial_y, np.float64),
                 order=m.order, keep=np.asarray(m.keep, np.float64))


@pytest.mark.parametrize("name", [
    "example_designs:eyeriss_like",
    "tutorial:05-mapper-conv1d+oc-3level:freebypass"])
def test_integer_points_equal_exact_model(reference, name):
  """Float factors + 0/1 keep weights give the integer path's numbers."""
  wl = _load(reference, name)
  maps = random_mappings(wl.structure, 256, seed=7)
  ev = evaluator(wl)
  want = jax.tree.map(np.asarray, ev(maps))
  got = jax.tree.map(np.asarray, ev(_as_float(maps)))
  for f in FIELDS:
    np.testing.assert_array_equal(getattr(got, f), getattr(want, f),
                                  err_msg=f)
  # and the reference mapping itself
  one = wl.mapping()
  a = wl.evaluate(one)
  b = wl.evaluate(_as_float(one))
  for f in FIELDS:
    np.testing.assert_array_equal(getattr(b, f), getattr(a, f), err_msg=f)


def _space(wl):
  return relax.RelaxedSpace.from_mapspace(wl.mapspace)


def test_factors_multiply_to_bounds(reference):
  wl = _load(reference, "example_designs:simba_like")
  space = _space(wl)
  r = space.init(np.random.default_rng(0), 16, scale=3.0)
  t, x, y = jax.vmap(space.factors)(r)
  prod = np.prod(np.asarray(t * x * y), axis=1)
  np.testing.assert_allclose(prod, np.broadcast_to(
      np.asarray(wl.structure.dim_bounds, float), prod.shape), rtol=1e-9)


def _objective(space, params, order):
  def f(r):
    m = space.mapping(r, order)
    obj, cp, fp = relax.objective_terms(space, params, m, r)
    return obj + 10.0 * (cp + fp)
  return f


def test_gradients_finite_and_match_finite_differences(reference):
  """Finite gradients everywhere sampled (incl. heavy capacity/fan-out
  overflow); directional derivatives match central differences where the
  piecewise parts do not switch."""
  wl = _load(reference, "tutorial:05-mapper-conv1d+oc-3level:freebypass")
  space = _space(wl)
  rng = np.random.default_rng(1)
  order = space.sample_order(_rows(space.init(rng, 1))[0],
                             jax.random.PRNGKey(0), 0.0)
  f = jax.jit(_objective(space, jax.tree.map(jnp.asarray, wl.params), order))
  grad = jax.jit(jax.value_and_grad(f))
  checked, results = 0, []
  for scale in (0.5, 3.0, 10.0):      # 10: near-vertex (boundary) points
    for r in _rows(space.init(rng, 6, scale=scale)):
      v, g = grad(r)
      assert np.isfinite(v)
      for leaf in jax.tree.leaves(g):
        assert np.all(np.isfinite(np.asarray(leaf)))
      # directional finite difference along a random direction
      d = jax.tree.map(lambda a: rng.normal(size=a.shape), r)
      # eps large enough that the straight-through ceils' unit steps
      # (relative size 1/count) are small against the slope times eps
      eps = 1e-2
      plus = f(jax.tree.map(lambda a, b: a + eps * b, r, d))
      minus = f(jax.tree.map(lambda a, b: a - eps * b, r, d))
      fd = (plus - minus) / (2 * eps)
      ad = sum(float(jnp.vdot(a, b)) for a, b in
               zip(jax.tree.leaves(g), jax.tree.leaves(d)))
      if abs(fd - ad) <= 0.05 * max(1.0, abs(fd)):
        checked += 1
      results.append((fd, ad))
  # Straight-through ceils/floors and discrete translation tests make some
  # points non-smooth; most must agree.
  # The relaxed objective keeps discrete parts (loop activity at 1.5,
  # translation matches, rounded gcd), so it jumps between some FD points.
  assert checked >= 5, results


def _rows(batch):
  n = batch.factor_logits.shape[0]
  return [jax.tree.map(lambda a: jnp.asarray(a[i]), batch) for i in range(n)]


def test_to_mapping_is_legal(reference):
  wl = _load(reference, "example_designs:simba_like")
  space = _space(wl)
  r = space.init(np.random.default_rng(3), 64, scale=2.0)
  m = relax.to_mapping(space, r, wl.params, seed=0)
  st = wl.evaluate(m)
  assert np.all(st.valid)


def test_search_reports_exact_legal_numbers(reference):
  wl = _load(reference, "tutorial:05-mapper-conv1d+oc-3level:freebypass")
  # The budget is far above what 6 steps use: the run ends after its steps.
  res = search(wl, "gradient", objective="edp", budget=100_000, starts=32,
               steps=6, round_every=3, progress=False, seed=0)
  assert res.best_mapping is not None and res.topk
  assert res.stop_reason == "steps"
  for key, m, s in res.topk:
    fresh = wl.evaluate(m)
    assert bool(fresh.valid)
    assert float(fresh.energy_total) == pytest.approx(float(s.energy_total),
                                                      rel=1e-12)
    assert float(fresh.cycles) == float(s.cycles)
    assert key[0] == pytest.approx(float(fresh.edp), rel=1e-12)
  assert res.relaxed_evaluated == 32 * 6
  assert all(row["relaxed_evaluated"] <= 32 * 6 for row in res.log)


def test_budget_stop_between_roundings_evaluates_the_starts(reference):
  """Stopped by its budget before the next rounding, a gradient search
  still rounds and evaluates what its last steps reached, within the
  budget."""
  wl = _load(reference, "tutorial:05-mapper-conv1d+oc-3level:freebypass")
  res = search(wl, "gradient", objective="edp", budget=100, starts=32,
               steps=50, round_every=10, progress=False, seed=0)
  assert res.stop_reason == "budget"
  assert (res.relaxed_evaluated, res.evaluated) == (3 * 32, 4)
  assert res.log[-1]["relaxed_evaluated"] == 3 * 32


def test_gradient_step_compiles_once(reference):
  """Restarts and roundings reuse one compiled optimizer step."""
  wl = _load(reference, "tutorial:05-mapper-conv1d+oc-3level:freebypass")
  search(wl, "gradient", objective="edp", budget=100_000, starts=16,
         steps=6, round_every=2, restart_fraction=0.25, progress=False,
         seed=1)
  _, step = gmod._step_fn(gmod.relaxed_space(wl.mapspace), "edp", 0.1)
  assert step._cache_size() == 1


def test_hybrid_spends_the_budget_on_both_phases(reference):
  """Gradient phase, then evolve seeded with its mappings: the exact and
  relaxed evaluations of both phases add up to the budget, and the log
  runs across both."""
  wl = _load(reference, "tutorial:05-mapper-conv1d+oc-3level:freebypass")
  res = search(wl, "hybrid", objective="edp", budget=2000, starts=16, steps=4, round_every=2,
               batch=256, progress=False, seed=0)
  assert res.evaluated + res.relaxed_evaluated == 2000
  assert 0 < res.relaxed_evaluated <= 16 * 4
  assert bool(res.best_stats.valid)
  evaluated = [row["evaluated"] for row in res.log]
  assert evaluated == sorted(evaluated) and evaluated[-1] == res.evaluated
  best = [row["best_objective"] for row in res.log]
  assert best == sorted(best, reverse=True)
  assert res.best_objective[0] == pytest.approx(float(res.best_stats.edp))
