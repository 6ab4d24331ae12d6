"""The mapping environment (jaxloop.research.env) and the learned mapper
(jaxloop.research.policy, the ``learned`` search) on the bundled example."""
from pathlib import Path

import jax
import numpy as np
import pytest

import jaxloop
from jaxloop import validity
from jaxloop.cli import build_parser
from jaxloop.mapspace import Genome
from jaxloop.research import policy as P
from jaxloop.research.env import MappingEnv, compiled_programs, random_action


@pytest.fixture(scope="module")
def workload():
  return jaxloop.load(*jaxloop.example_files())


@pytest.fixture(scope="module")
def env(workload):
  return MappingEnv.of(workload)


@pytest.fixture(scope="module")
def trained(workload, env):
  """A policy after 12 behaviour-cloning steps on the example's searched
  mappings, and its losses."""
  res = jaxloop.search(workload, method="evolve", budget=2000, seed=0,
                       topk=16, progress=False)
  g = Genome.concat([workload.mapspace.encode(m) for _, m, _ in res.topk])
  data = P.imitation_data(env, workload, g)
  assert len(data["actions"]) == len(g)     # every searched mapping replays
  pol, losses = P.train_imitation(P.Policy.init(0), [data], steps=12,
                                  batch=8, lr=3e-3)
  return pol, losses


def test_random_episodes_end_legal_with_the_models_reward(workload, env):
  n = 96
  with jax.enable_x64(True):
    params = env.default_params
    reset = jax.jit(jax.vmap(env.reset, in_axes=(0, None)))
    step = jax.jit(jax.vmap(env.step, in_axes=(0, 0, 0, None)))
    pick = jax.jit(jax.vmap(random_action))
    keys = jax.random.split(jax.random.PRNGKey(3), n)
    obs, state = reset(keys, params)
    total, taken = np.zeros(n), []
    for t in range(env.layout.horizon):
      keys = jax.vmap(lambda k: jax.random.fold_in(k, t))(keys)
      action = pick(keys, obs["mask"])
      assert np.all(np.take_along_axis(np.asarray(obs["mask"]),
                                       np.asarray(action)[:, None], 1))
      obs, state, reward, done, info = step(keys, state, action, params)
      total += np.asarray(reward)
      taken.append(np.asarray(action))
  assert np.all(np.asarray(done)) and np.all(np.asarray(info["valid"]))
  g = env.genome_of(state)
  np.testing.assert_array_equal(env.actions_of(g), np.stack(taken, 1))
  ms = workload.mapspace
  assert np.all(ms.spatial_ok(g))
  mappings = ms.decode(g)
  for d, ds in enumerate(ms.dims):     # factors are rows of the tables
    assert np.all(g.fidx[:, d] < len(ds.table))
  stats = jaxloop.evaluator(workload)(mappings)
  assert np.all(np.asarray(stats.valid))
  edp = np.asarray(stats.energy_total) * 1e-12 * np.asarray(stats.cycles)
  np.testing.assert_allclose(total, -np.log(edp), rtol=1e-12)
  one = jax.tree.map(lambda a: a[0], mappings)
  assert validity.violations(workload, mapping=one) == []
  assert len(np.unique(ms.canonical_hash(g))) > n // 2   # not one mapping


def test_layers_of_one_kind_share_one_compiled_program(workload, tmp_path):
  """A smaller 3x3 conv (same layer kind) gets the example's program; its
  numbers (tables, bounds) are data and its returns are its own model's."""
  files = jaxloop.example_files()
  problem = tmp_path / "problem.yaml"
  problem.write_text(Path(files[-1]).read_text().replace(
      "C: 16, M: 32", "C: 8, M: 32").replace("P: 14, Q: 14", "P: 7, Q: 7"))
  small = jaxloop.load(*files[:-1], str(problem))
  envs = MappingEnv.family([workload, small])
  assert envs[0].layout == envs[1].layout
  assert envs[1].layout.structure.dim_bounds == workload.structure.dim_bounds
  before = compiled_programs()
  for wl, env in zip([workload, small], envs):
    ret, ok, final = env.random_rollouts(jax.random.PRNGKey(1), 32)
    g = env.genome_of(final)
    assert np.all(wl.mapspace.spatial_ok(g)) and np.all(np.asarray(ok))
    stats = jaxloop.evaluator(wl)(wl.mapspace.decode(g))
    edp = np.asarray(stats.energy_total) * 1e-12 * np.asarray(stats.cycles)
    np.testing.assert_allclose(np.asarray(ret), -np.log(edp), rtol=1e-12)
  assert compiled_programs() == before + 1


def test_policy_training_lowers_the_loss(trained):
  _, losses = trained
  assert np.mean(losses[-3:]) < 0.8 * losses[0]


def test_checkpoint_round_trip(trained, tmp_path):
  pol, _ = trained
  pol.meta = {"train_layers": ["example"]}
  P.save(pol, tmp_path / "p.policy")
  back = P.load(tmp_path / "p.policy")
  same = jax.tree.map(lambda a, b: np.array_equal(np.asarray(a),
                                                  np.asarray(b)),
                      pol.params, back.params)
  assert all(jax.tree.leaves(same)) and back.meta == pol.meta
  (tmp_path / "bad.policy").write_bytes(b"not msgpack")
  with pytest.raises(jaxloop.SpecError, match="not a jaxloop policy"):
    P.load(tmp_path / "bad.policy")


def test_learned_search_end_to_end(workload, env, trained, tmp_path):
  pol, _ = trained
  P.save(pol, tmp_path / "p.policy")
  res = jaxloop.search(workload, method="learned", budget=1500, seed=0,
                       progress=False, policy=str(tmp_path / "p.policy"),
                       samples=256)
  assert res.best_stats is not None and bool(res.best_stats.valid)
  assert res.evaluated == 1500
  g, ret, ok = P.sample(pol, env, workload, 256, seed=0)
  assert np.all(ok)
  edp = np.exp(-ret)
  assert res.best_objective[0] <= edp.min() * (1 + 1e-9)
  args = build_parser().parse_args(
      ["map", "x.yaml", "-o", "out", "--search", "learned", "--policy",
       "p.policy"])
  assert args.search == "learned" and args.policy == "p.policy"
