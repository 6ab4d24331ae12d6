"""The model against Timeloop's reference outputs, batching and compilation."""
import functools
import json

import jax
import jax.numpy as jnp
import numpy as np

from jaxloop import mapspace
import pytest

from jaxloop import api
from jaxloop import mapping as mapping_lib
from jaxloop.model import blocks
from jaxloop.model.evaluate import (evaluate_batch, make_evaluator,
                                    make_single_evaluator)
from jaxloop.report import stats_dict
from jaxloop.types import Mapping
from jaxloop.validate import case_files, compare

from support import REFERENCE, random_mappings, reference_cases

CASES = reference_cases()


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_reference_case(case, reference):
  """Every count exact, energies within 0.1 %, cycles exact (issue #2)."""
  wl = api.load(*case_files(reference, case))
  got = stats_dict(wl.structure, wl.evaluate())
  expected = json.loads((reference / case["dir"] / case["expected"])
                        .read_text())
  bad = compare(got, expected)
  assert not bad, f"{case['name']}: " + "; ".join(bad)




def _eyeriss(reference):
  case = next(c for c in CASES if c["name"] == "example_designs:eyeriss_like")
  return api.load(*case_files(reference, case))


def test_batch_equals_single(reference):
  """10,000 random legal mappings in one call == one at a time."""
  wl = _eyeriss(reference)
  pool = random_mappings(wl.structure, 60_000, seed=1)
  valid = np.asarray(make_evaluator(wl.structure)(wl.params, pool).valid)
  idx = np.nonzero(valid)[0][:10_000]
  assert idx.size == 10_000, f"only {idx.size} legal mappings in the pool"
  batch = jax.tree.map(lambda x: x[idx], pool)
  got = jax.tree.map(np.asarray, make_evaluator(wl.structure)(wl.params, batch))
  single = make_single_evaluator(wl.structure)
  for b in range(0, 10_000, 97):  # every 97th, plus the check below
    one = jax.tree.map(lambda x: x[b], batch)
    want = jax.tree.map(np.asarray, single(wl.params, one))
    for field in ("reads", "fills", "updates", "utilized_capacity", "cycles",
                  "valid"):
      np.testing.assert_array_equal(getattr(got, field)[b],
                                    getattr(want, field), err_msg=field)
    # XLA may sum energies in another order under vmap: 1e-10 relative.
    np.testing.assert_allclose(got.energy[b], want.energy, rtol=1e-9)
  # All 10,000 through a Python loop of single evaluations.
  singles = [single(wl.params, jax.tree.map(lambda x: x[b], batch))
             for b in range(10_000)]
  np.testing.assert_array_equal(
      got.reads, np.stack([np.asarray(s.reads) for s in singles]))
  np.testing.assert_array_equal(
      got.cycles, np.array([float(s.cycles) for s in singles]))
  np.testing.assert_allclose(
      got.energy_total, np.array([float(s.energy_total) for s in singles]),
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


@pytest.mark.parametrize("lanes", [64, 100])
def test_blocked_layout_equals_batch_first(reference, lanes):
  """evaluate_blocks on the blocked layout (last block padded) gives the
  batch-first evaluator's numbers for every field and row, ``pick`` keeps
  those fields alone, and new blocks of the same shape reuse the
  compilation."""
  wl = _eyeriss(reference)
  pool = random_mappings(wl.structure, 230, seed=5)
  want = jax.tree.map(np.asarray, make_evaluator(wl.structure)(wl.params,
                                                               pool))
  fn = blocks.make_block_evaluator(wl.structure)
  blocked = blocks.to_blocks(pool, lanes)
  assert blocked.temporal.shape == (
      -(-230 // lanes),) + pool.temporal.shape[1:] + (lanes,)
  out = fn(wl.params, blocked)
  got = blocks.from_blocks(jax.tree.map(np.asarray, out), 230)
  for field in want.__dataclass_fields__:
    np.testing.assert_array_equal(getattr(got, field), getattr(want, field),
                                  err_msg=field)
  picked = jax.jit(functools.partial(
      blocks.evaluate_blocks, wl.structure,
      pick=lambda st: (st.energy_total, st.valid)))(wl.params, blocked)
  np.testing.assert_array_equal(blocks.from_blocks(picked[0], 230),
                                want.energy_total)
  np.testing.assert_array_equal(blocks.from_blocks(picked[1], 230),
                                want.valid)
  rows = np.array([0, 229, 101, lanes, lanes - 1])
  taken = blocks.take(jax.tree.map(jnp.asarray, blocked), jnp.asarray(rows))
  np.testing.assert_array_equal(taken.order, pool.order[rows])
  np.testing.assert_array_equal(taken.keep, pool.keep[rows])
  before = fn._cache_size()
  other = blocks.to_blocks(random_mappings(wl.structure, 230, seed=6), lanes)
  other_stats = jax.tree.map(np.asarray, fn(wl.params, other))
  assert fn._cache_size() == before
  # Recycled output buffers: the same numbers, whatever ``out`` held.
  rec = blocks.make_block_evaluator(wl.structure, recycle=True)
  compiled = rec._cache_size()
  first = rec(wl.params, other, None)
  again = rec(wl.params, blocked, first)
  for field in want.__dataclass_fields__:
    np.testing.assert_array_equal(
        blocks.from_blocks(np.asarray(getattr(again, field)), 230),
        getattr(want, field), err_msg=field)
  np.testing.assert_array_equal(
      np.asarray(rec(wl.params, other, again).reads), other_stats.reads)
  assert rec._cache_size() == compiled + 2  # out=None, then recycled out


def test_no_recompile_on_new_orders_and_bypass(reference):
  wl = _eyeriss(reference)
  fn = make_evaluator(wl.structure)
  a = random_mappings(wl.structure, 512, seed=2)
  b = random_mappings(wl.structure, 512, seed=3)
  assert not np.array_equal(a.order, b.order)
  assert not np.array_equal(a.keep, b.keep)
  jax.block_until_ready(fn(wl.params, a))
  before = fn._cache_size()
  jax.block_until_ready(fn(wl.params, b))
  assert fn._cache_size() == before


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


@pytest.mark.parametrize("layer", [None, "gpt2/001.yaml"])
def test_dropping_unit_dims_changes_no_count(reference, layer):
  """The model runs on the structure without bound-1 dims (N = 1 in the
  eyeriss conv; R, S, P, Q, N in a GEMM): same counts as the full one."""
  from jaxloop.model import access, unit_dims
  from jaxloop.spec import load_spec
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
