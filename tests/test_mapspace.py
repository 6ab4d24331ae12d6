"""Tests for jaxloop.mapspace: constraints, sizes, sampling, enumeration."""
from __future__ import annotations

import collections
import dataclasses
import itertools
import math
from pathlib import Path

import jax
import numpy as np
import pytest

import jaxloop
from jaxloop.errors import SpecError
from jaxloop.mapping import mapping_from_directives
from jaxloop.mapspace import Mapspace
from jaxloop.spec import load_spec
from jaxloop.spec.types import Directive
from jaxloop.structure import build_structure
from support import reference_cases

EXAMPLE = Path(jaxloop.example_files()[0]).parent
# Example arch: RegisterFile, inter_PE_spatial (4x4, dummy), GlobalBuffer,
# DRAM; dims C M R S N P Q.
RF, PE, GB, DRAM = 0, 1, 2, 3
C, M, R, S, N, P, Q = range(7)


def _example(bounds=None):
  spec = load_spec(EXAMPLE / "arch.yaml", EXAMPLE / "problem.yaml",
                   EXAMPLE / "ERT.yaml")
  if bounds is not None:
    spec = dataclasses.replace(
        spec, problem=dataclasses.replace(spec.problem, bounds=tuple(bounds)))
  return spec, build_structure(spec)


def _space(bounds=None, extra=(), base=True):
  spec, st = _example(bounds)
  cons = (tuple(spec.constraints) if base else ()) + tuple(extra)
  return Mapspace.from_spec(spec, st, constraints=cons), st


def _check_perfect(st, m):
  prod = np.prod(m.temporal * m.spatial_x * m.spatial_y, axis=1)
  assert (prod == np.asarray(st.dim_bounds)).all()


def _check_fanout(st, m):
  assert (np.prod(m.spatial_x, axis=2) <= np.asarray(st.fanout_x)).all()
  assert (np.prod(m.spatial_y, axis=2) <= np.asarray(st.fanout_y)).all()
  assert not ((m.spatial_x > 1) & (m.spatial_y > 1)).any()


def _full_perms():
  dims = "CMRSNPQ"
  return tuple(Directive(target=t, type="temporal", permutation=tuple(dims))
               for t in ("RegisterFile", "GlobalBuffer", "DRAM"))


def _brute_factorizations(st, ms):
  """Counts factorizations by brute force over all slot assignments."""
  L = st.num_levels
  per_dim = [ds.table for ds in ms.dims]
  count = 0
  for rows in itertools.product(*per_dim):
    fac = np.stack(rows, axis=1).reshape(3, L, -1)
    if (np.prod(fac[1], axis=1) <= np.asarray(st.fanout_x)).all() and (
        np.prod(fac[2], axis=1) <= np.asarray(st.fanout_y)).all():
      count += 1
  return count


def test_default_space_rules():
  ms, st = _space()
  m = ms.sample(np.random.default_rng(0), 2000)
  _check_perfect(st, m)
  _check_fanout(st, m)
  # The dummy level has no temporal loops and keeps nothing; the outermost
  # level keeps everything.
  assert (m.temporal[:, PE] == 1).all()
  assert not m.keep[:, PE].any()
  assert m.keep[:, DRAM].all()
  # Non-fan-out levels have no spatial factors.
  for l in (RF, GB, DRAM):
    assert (m.spatial_x[:, l] == 1).all() and (m.spatial_y[:, l] == 1).all()
  assert m.temporal.dtype == np.int32 and m.order.dtype == np.int32
  assert m.keep.dtype == bool
  size = ms.size()
  assert size["bypass"] == 2 ** 6
  assert size["permutations"] == math.factorial(7) ** 3


def test_fixed_factors_and_bounds():
  extra = (Directive(target="GlobalBuffer", type="temporal",
                     factors=(("M", 4), ("C", 0)),
                     factor_bounds=(("P", "<=", 2),)),
           Directive(target="RegisterFile", type="temporal",
                     factor_bounds=(("C", ">=", 4),)))
  ms, st = _space(extra=extra)
  m = ms.sample(np.random.default_rng(1), 3000)
  _check_perfect(st, m)
  assert (m.temporal[:, GB, M] == 4).all()
  assert (m.temporal[:, GB, P] <= 2).all()
  assert (m.temporal[:, RF, C] >= 4).all()
  assert len(np.unique(m.temporal[:, GB, C])) > 1      # 0 = unconstrained
  for ds_rows in (ms.dims[M].table,):
    assert (ds_rows[:, GB] == 4).all()


def test_impossible_fixed_factor_raises():
  extra = (Directive(target="GlobalBuffer", type="temporal",
                     factors=(("M", 3),)),)
  with pytest.raises(SpecError):
    _space(extra=extra)


def test_permutation_prefix_and_full():
  extra = (Directive(target="RegisterFile", type="temporal",
                     permutation=("R", "S")),
           Directive(target="DRAM", type="temporal",
                     permutation=tuple("QPNSRMC")))
  ms, st = _space(extra=extra)
  m = ms.sample(np.random.default_rng(2), 500)
  assert (m.order[:, RF, :2] == [R, S]).all()
  assert len({tuple(o) for o in m.order[:, RF, 2:]}) > 50
  assert (m.order[:, DRAM] == [Q, P, N, S, R, M, C]).all()
  for o in m.order.reshape(-1, 7):
    assert sorted(o) == list(range(7))
  assert ms.size()["permutations"] == (math.factorial(5)
                                       * math.factorial(7))


def test_spatial_split_and_fixed_spatial():
  # M before the split goes to X; C after it to Y; M fixed to 4 spatially.
  extra = (Directive(target="inter_PE_spatial", type="spatial",
                     factors=(("M", 4),), permutation=("M", "C"), split=1),)
  ms, st = _space(bounds=(8, 8, 1, 1, 1, 2, 2), extra=extra)
  m = ms.sample(np.random.default_rng(3), 2000)
  _check_perfect(st, m)
  _check_fanout(st, m)
  assert (m.spatial_x[:, PE, M] == 4).all()
  assert (m.spatial_y[:, PE, M] == 1).all()
  assert (m.spatial_x[:, PE, C] == 1).all()
  assert (m.spatial_y[:, PE, C] > 1).any()
  # Unlisted dims stay free: P may go to Y (X is full with M=4).
  assert (m.spatial_y[:, PE, P] > 1).any()


def test_keep_bypass_constraints():
  extra = (Directive(target="RegisterFile", type="bypass",
                     keep=("Weights",), bypass=("Inputs",)),)
  ms, st = _space(extra=extra)
  m = ms.sample(np.random.default_rng(4), 1000)
  assert m.keep[:, RF, 0].all() and not m.keep[:, RF, 1].any()
  assert m.keep[:, RF, 2].any() and not m.keep[:, RF, 2].all()
  assert ms.size()["bypass"] == 2 ** 4


def test_fanout_size_matches_brute_force():
  ms, st = _space(bounds=(4, 8, 1, 1, 1, 2, 1))
  assert ms.size()["factorizations"] == _brute_factorizations(st, ms)
  m = ms.sample(np.random.default_rng(5), 3000)
  _check_fanout(st, m)
  # Without the fan-out limit there would be more.
  assert ms.size()["factorizations"] < math.prod(
      len(ds.table) for ds in ms.dims)


def _tiny():
  extra = _full_perms() + (
      Directive(target="RegisterFile", type="bypass",
                keep=("Weights", "Inputs")),
      Directive(target="GlobalBuffer", type="bypass",
                keep=("Weights", "Inputs", "Outputs")))
  return _space(bounds=(2, 4, 1, 1, 1, 2, 1), extra=extra)


def test_sampling_is_uniform():
  ms, st = _tiny()
  total = ms.size()["total"]
  assert 20 <= total <= 2000
  n = 200 * total
  g = ms.sample_genome(np.random.default_rng(6), n)
  keys = collections.Counter(
      map(bytes, np.concatenate([g.fidx, g.keep.reshape(n, -1)], axis=1)
          .astype(np.int64)))
  assert len(keys) == total
  counts = np.asarray(list(keys.values()), np.float64)
  expected = n / total
  chi2 = ((counts - expected) ** 2 / expected).sum()
  dof = total - 1
  assert chi2 < dof + 6 * math.sqrt(2 * dof)


def test_sampling_is_reproducible():
  """Equal generator states give equal genomes; the generator moves on."""
  ms, st = _space()
  a = ms.sample_genome(np.random.default_rng(8), 100)
  b = ms.sample_genome(np.random.default_rng(8), 100)
  for x, y in zip((a.fidx, a.order, a.keep), (b.fidx, b.order, b.keep)):
    np.testing.assert_array_equal(x, y)
  assert a.fidx.shape == (100, st.num_dims) and a.fidx.dtype == np.int64
  assert a.order.shape == (100, st.num_levels, st.num_dims)
  assert a.keep.shape == (100, st.num_levels, st.num_dataspaces)
  rng = np.random.default_rng(8)
  first, second = ms.sample_genome(rng, 100), ms.sample_genome(rng, 100)
  assert not np.array_equal(first.fidx, second.fidx)
  assert len(ms.sample_genome(rng, 0)) == 0


def test_draw_blocks_is_draw_in_blocks():
  """The blocked draw holds the same mappings as the batch-first one, block
  b lane c being row b * C + c; both are the sampler's mappings."""
  ms, st = _space()
  key = jax.random.PRNGKey(7)
  rows = jax.tree.map(np.asarray, jax.jit(ms.draw, static_argnums=1)(
      key, 192))
  blocked = jax.tree.map(np.asarray, jax.jit(
      ms.draw_blocks, static_argnums=(1, 2))(key, 3, 64))
  for name in ("temporal", "spatial_x", "spatial_y", "order", "keep"):
    a = getattr(rows, name)
    np.testing.assert_array_equal(
        a, np.moveaxis(getattr(blocked, name), -1, 1).reshape(a.shape),
        err_msg=name)
  _check_perfect(st, rows)
  _check_fanout(st, rows)
  g = ms.encode(jax.tree.map(lambda a: a[5], rows))
  np.testing.assert_array_equal(g.order[0], rows.order[5])
  # sample() is this draw, keyed by two words of the generator.
  words = np.random.default_rng(9).integers(0, 2**32, size=2, dtype=np.uint32)
  drawn = jax.jit(ms.draw, static_argnums=1)(words, 64)
  sampled = ms.sample(np.random.default_rng(9), 64)
  for a, b in zip(jax.tree.leaves(sampled), jax.tree.leaves(drawn)):
    np.testing.assert_array_equal(a, np.asarray(b))


def test_exhaustive_is_complete():
  ms, st = _tiny()
  seen = set()
  count = 0
  for m in ms.enumerate_chunks(37):
    assert len(m.temporal) <= 37
    _check_perfect(st, m)
    _check_fanout(st, m)
    for i in range(len(m.temporal)):
      seen.add(b"".join(np.asarray(getattr(m, f)[i]).tobytes()
                        for f in ("temporal", "spatial_x", "spatial_y",
                                  "order", "keep")))
    count += len(m.temporal)
  assert count == len(seen) == ms.size()["total"]


def test_enumeration_merges_unit_loop_orders():
  ms, st = _space(bounds=(2, 2, 1, 1, 1, 1, 1))
  n = sum(len(m.temporal) for m in ms.enumerate_chunks(1000))
  assert n == ms.enumeration_size()
  assert n < ms.size()["total"]


@pytest.mark.parametrize("case", [c for c in reference_cases()
                                  if c["kind"] == "mapper"],
                         ids=lambda c: c["name"])
def test_reference_mappings_are_in_space(reference, case):
  d = reference / case["dir"]
  spec = load_spec(d / case["input"], d / case["mapping"],
                   ert=d / case["ert"], art=d / case["art"])
  st = build_structure(spec)
  ms = Mapspace.from_spec(spec, st)
  g = ms.encode(mapping_from_directives(st, spec.mapping))
  assert len(g) == 1
  m = ms.sample(np.random.default_rng(7), 256)
  _check_perfect(st, m)
  _check_fanout(st, m)
