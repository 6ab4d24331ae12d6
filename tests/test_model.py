"""The model against Timeloop's reference outputs, batching and compilation."""
import functools
import json

import jax
import jax.numpy as jnp
import numpy as np

import pytest

import jaxloop
from jaxloop import api
from jaxloop import mapping as mapping_lib
from jaxloop.model.evaluate import evaluate, evaluate_batch
from jaxloop.report import stats_dict
from jaxloop.validate import case_files, compare

from support import random_mappings, reference_cases

CASES = reference_cases()


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_reference_case(case, reference):
  """Every count exact, energies within 0.1 %, cycles exact ."""
  wl = api.load(*case_files(reference, case))
  got = stats_dict(wl.structure, wl.evaluate())
  expected = json.loads((reference / case["dir"] / case["expected"])
                        .read_text())
  bad = compare(got, expected)
  assert not bad, f"{case['name']}: " + "; ".join(bad)




def _eyeriss(reference):
  case = next(c for c in CASES if c["name"] == "example_designs:eyeriss_like")
  return api.load(*case_files(reference, case))


@pytest.mark.slow
def test_batch_equals_single(reference):
  """10,000 random legal mappings in one call == one at a time (the
  single-mapping model mapped sequentially over them in one program)."""
  wl = _eyeriss(reference)
  ev = jaxloop.evaluator(wl)
  pool = random_mappings(wl.structure, 60_000, seed=1)
  valid = np.asarray(ev(pool).valid)
  idx = np.nonzero(valid)[0][:10_000]
  assert idx.size == 10_000, f"only {idx.size} legal mappings in the pool"
  batch = jax.tree.map(lambda x: x[idx], pool)
  got = jax.tree.map(np.asarray, ev(batch))
  for b in range(0, 10_000, 97):  # the public single-mapping call
    want = jax.tree.map(np.asarray, ev(jax.tree.map(lambda x: x[b], batch)))
    for field in ("reads", "fills", "updates", "utilized_capacity", "cycles",
                  "valid"):
      np.testing.assert_array_equal(getattr(got, field)[b],
                                    getattr(want, field), err_msg=field)
    # XLA may sum energies in another order under vmap: 1e-10 relative.
    np.testing.assert_allclose(got.energy[b], want.energy, rtol=1e-9)
  # All 10,000 one at a time: the single-mapping model in a sequential map.
  one_by_one = jax.jit(lambda p, m: jax.lax.map(
      functools.partial(evaluate, wl.structure, p), m))
  singles = jax.tree.map(np.asarray, one_by_one(wl.params, batch))
  np.testing.assert_array_equal(got.reads, singles.reads)
  np.testing.assert_array_equal(got.cycles, singles.cycles)
  np.testing.assert_allclose(got.energy_total, singles.energy_total,
                             rtol=1e-9)


@pytest.mark.parametrize("chunk", [64, 100, 1024])
def test_blocks_not_dividing_the_batch(reference, chunk):
  """Blocks of any size give one result per row: a last block that
  overlaps the one before writes the same values (230 rows)."""
  wl = _eyeriss(reference)
  pool = random_mappings(wl.structure, 230, seed=4)
  want = jax.jit(functools.partial(evaluate_batch, wl.structure, chunk=230))(
      wl.params, pool)
  got = jax.jit(functools.partial(evaluate_batch, wl.structure, chunk=chunk))(
      wl.params, pool)
  for field in ("reads", "fills", "updates", "utilized_capacity", "cycles",
                "valid", "energy_total"):
    np.testing.assert_array_equal(np.asarray(getattr(got, field)),
                                  np.asarray(getattr(want, field)),
                                  err_msg=field)


@pytest.mark.slow
@pytest.mark.parametrize("lanes", [64, 100])
def test_blocked_layout_equals_batch_first(reference, lanes):
  """The blocked layout (last block padded) gives the batch-first
  evaluator's numbers for every field and row, ``stats=`` keeps those
  fields alone, new blocks of the same shape reuse the compilation, and
  recycled output buffers give the same numbers whatever they held."""
  wl = _eyeriss(reference)
  pool = random_mappings(wl.structure, 230, seed=5)
  want = jax.tree.map(np.asarray, jaxloop.evaluator(wl)(pool))
  ev = jaxloop.evaluator(wl)
  blocked = jaxloop.Blocked.of(pool, lanes)
  assert blocked.data.temporal.shape == (
      -(-230 // lanes),) + pool.temporal.shape[1:] + (lanes,)
  out = ev(blocked)
  got = jax.tree.map(np.asarray, out.unblock())
  for field in want.__dataclass_fields__:
    np.testing.assert_array_equal(getattr(got, field), getattr(want, field),
                                  err_msg=field)
  picked = jaxloop.evaluator(wl, stats=("energy_total", "valid"))(blocked)
  assert picked.data.reads is None and picked.data.cycles is None
  np.testing.assert_array_equal(picked.field("energy_total"),
                                want.energy_total)
  np.testing.assert_array_equal(picked.field("valid"), want.valid)
  rows = np.array([0, 229, 101, lanes, lanes - 1])
  taken = jaxloop.Blocked(jax.tree.map(jnp.asarray, blocked.data),
                          230).take(rows)
  np.testing.assert_array_equal(taken.order, pool.order[rows])
  np.testing.assert_array_equal(taken.keep, pool.keep[rows])
  before = ev.compiles()
  other = jaxloop.Blocked.of(random_mappings(wl.structure, 230, seed=6),
                             lanes)
  other_stats = jax.tree.map(np.asarray, ev(other).data)
  assert ev.compiles() == before
  rec = jaxloop.evaluator(wl, recycle=True)
  rec(other)
  compiled = rec.compiles()
  again = rec(blocked)                   # written into the first's buffers
  for field in want.__dataclass_fields__:
    np.testing.assert_array_equal(np.asarray(again.field(field)),
                                  getattr(want, field), err_msg=field)
  np.testing.assert_array_equal(np.asarray(rec(other).data.reads),
                                other_stats.reads)
  assert rec.compiles() <= compiled + 1   # the recycled program, once


def test_no_recompile_on_new_orders_and_bypass(reference):
  wl = _eyeriss(reference)
  ev = jaxloop.evaluator(wl)
  a = random_mappings(wl.structure, 512, seed=2)
  b = random_mappings(wl.structure, 512, seed=3)
  assert not np.array_equal(a.order, b.order)
  assert not np.array_equal(a.keep, b.keep)
  jax.block_until_ready(ev(a))
  before = ev.compiles()
  jax.block_until_ready(ev(b))
  assert ev.compiles() == before


def test_directives_roundtrip(reference, tmp_path):
  """A mapping written as Timeloop directives reads back identically."""
  import yaml
  from jaxloop.spec import load_spec
  wl = _eyeriss(reference)
  one = jax.tree.map(lambda x: x[0], random_mappings(wl.structure, 1, seed=4))
  path = tmp_path / "map.yaml"
  path.write_text(yaml.safe_dump({"mapping": mapping_lib.directives_from_mapping(
      wl.structure, one)}))
  case = next(c for c in CASES if c["name"] == "example_designs:eyeriss_like")
  spec = load_spec(case_files(reference, case)[0], path)
  back = mapping_lib.mapping_from_directives(wl.structure, spec.mapping)
  for field in ("temporal", "spatial_x", "spatial_y", "keep"):
    np.testing.assert_array_equal(getattr(back, field), getattr(one, field),
                                  err_msg=field)
  np.testing.assert_array_equal(wl.evaluate(one).reads,
                                wl.evaluate(back).reads)


@pytest.mark.slow
@pytest.mark.parametrize("layer", [None, "gpt2/001.yaml"])
def test_dropping_unit_dims_changes_no_count(reference, layer):
  """The model runs on the structure without bound-1 dims (N = 1 in the
  eyeriss conv; R, S, P, Q, N in a GEMM): same counts as the full one."""
  from jaxloop.model import access, unit_dims
  case = next(c for c in reference_cases()
              if c["name"] == "example_designs:eyeriss_like")
  files = case_files(reference, case)
  if layer is not None:
    files = files + [reference / "layer_shapes" / layer]
  wl = api.load(*files)
  small, kept = unit_dims.reduced(wl.structure)
  assert len(kept) < wl.structure.num_dims
  m = random_mappings(wl.structure, 300, seed=3)
  full = jax.jit(jax.vmap(lambda x: access.access_counts(wl.structure, x)))
  part = jax.jit(jax.vmap(lambda x: jax.tree.map(
      lambda y: y[..., 0], access.access_counts_last(
          small, unit_dims.restrict(access.batch_last(x), kept)))))
  a, b = full(m), part(m)
  for name in ("reads", "fills", "updates", "utilized_capacity",
               "link_transfers"):
    np.testing.assert_array_equal(np.asarray(getattr(a, name)),
                                  np.asarray(getattr(b, name)), err_msg=name)


@pytest.mark.parametrize("scale", [1, 64])
def test_translation_keys_equal_iff_ranks_equal(reference, scale):
  """Key equality (int32, wrapping; and float64) == equality on every rank
  of a data space, for translations within the bounds.  ``scale`` 64
  blows the bounds up so that some data spaces need several key groups."""
  import dataclasses
  from jaxloop.model import tiling
  s = _eyeriss(reference).structure
  s = dataclasses.replace(s, dim_bounds=tuple(b * scale
                                              for b in s.dim_bounds))
  groups = tiling.translation_keys(s).of_dataspace
  assert (max(map(len, groups)) > 1) == (scale > 1), groups
  rng = np.random.default_rng(0)
  bounds = np.asarray(s.dim_bounds)[:, None]
  n = 20_000
  # Small values collide often (also across the dims of a sliding-window
  # rank); values at +-bound exercise the wrap-around of the int32 keys.
  small = rng.integers(-2, 3, (2, s.num_dims, n))
  edge = rng.choice([-1, 0, 1], (2, s.num_dims, n)) * bounds
  pick = rng.random((2, s.num_dims, n)) < 0.3
  a, b = np.where(pick, edge, small)
  b = np.where(rng.random((s.num_dims, n)) < 0.5, a, b)
  ranks_a = np.asarray(tiling.project(s, a))
  ranks_b = np.asarray(tiling.project(s, b))
  expected = np.stack([np.all(ranks_a[list(idx)] == ranks_b[list(idx)],
                              axis=0)
                       for idx in tiling.expressions(s).of_dataspace])
  assert expected.any(axis=1).all() and not expected.all(axis=1).any()
  for dtype in (np.int32, np.float64):
    ka = tiling.keys(s, a.astype(dtype))
    kb = tiling.keys(s, b.astype(dtype))
    got = np.asarray(tiling.same_translation(s, ka == kb))
    np.testing.assert_array_equal(got, expected, err_msg=str(dtype))
