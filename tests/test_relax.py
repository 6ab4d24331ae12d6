"""The relaxed model and gradient search (issue #4)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxloop import api, relax
from jaxloop.mapspace import Mapspace
from jaxloop.model.evaluate import evaluate, make_evaluator
from jaxloop.search.gradient import gradient_search
from jaxloop.types import Mapping
from jaxloop.validate import case_files

from support import reference_cases
from support import random_mappings

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
  fn = make_evaluator(wl.structure)
  want = jax.tree.map(np.asarray, fn(wl.params, maps))
  got = jax.tree.map(np.asarray, fn(wl.params, _as_float(maps)))
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
  return relax.RelaxedSpace.from_mapspace(Mapspace.from_spec(wl.spec,
                                                             wl.structure))


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
  st = wl.evaluate_batch(m)
  assert np.all(st.valid)


def test_search_reports_exact_legal_numbers(reference):
  wl = _load(reference, "tutorial:05-mapper-conv1d+oc-3level:freebypass")
  res = gradient_search(wl.spec, starts=32, steps=6, round_every=3,
                        progress=False, seed=0)
  assert res.best_mapping is not None and res.topk
  fresh_fn = make_evaluator(wl.structure)
  for key, m, s in res.topk:
    batch = jax.tree.map(lambda a: np.asarray(a)[None], m)
    fresh = jax.tree.map(lambda a: np.asarray(a)[0], fresh_fn(wl.params,
                                                               batch))
    assert bool(fresh.valid)
    assert float(fresh.energy_total) == pytest.approx(float(s.energy_total),
                                                      rel=1e-12)
    assert float(fresh.cycles) == float(s.cycles)
    assert key[0] == pytest.approx(float(fresh.energy_total) * 1e-12
                                   * float(fresh.cycles), rel=1e-12)
  assert res.relaxed_evaluated == 32 * 6


def test_gradient_step_compiles_once(reference):
  """Restarts and roundings reuse one compiled optimizer step."""
  from jaxloop.search import gradient as gmod
  wl = _load(reference, "tutorial:05-mapper-conv1d+oc-3level:freebypass")
  ms = Mapspace.from_spec(wl.spec, wl.structure)
  gradient_search(wl.spec, starts=16, steps=6, round_every=2,
                  restart_fraction=0.25, progress=False, seed=1,
                  mapspace=ms)
  _, step = gmod._step_fn(gmod._space(ms), "edp", 0.1)
  assert step._cache_size() == 1
