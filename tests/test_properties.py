"""Property-based tests of the model on random problems, architectures and
mappings.

Hypothesis draws a small conv-like or GEMM-like problem, a 2-4 level storage
hierarchy with random fan-outs, capacities, bandwidths and ERT energies (all
built in memory as :mod:`jaxloop.spec.types` objects), and a seed for a batch
of random legal mappings (perfect factorizations within the fan-outs, random
loop orders and keep bits, the outermost level keeping everything).  Each
example compiles the model once, so the example counts are small.

The access-count properties follow Timeloop's accounting and were checked on
the mappings of the 20 reference cases and on random mappings of them:

* the outermost level is never filled and its tile is the whole data space;
* tiles nest: a kept child's tile is no larger than its keeping parent's;
* read-only data: the parent's reads (all instances) are at most the child's
  fills (multicast: one read can fill several children) and at least the
  fills divided by the fan-out between them;
* read-write data: the parent's updates are at most the child's (spatial
  reduction only merges);
* the innermost keeper of a data space serves at most one access per MAC.

The flow bounds are checked where no link transfer is involved: children
passing data to mesh neighbours add reads and fills below and remove reads
above (Timeloop's ComputePeerAccesses), which breaks them by design.
"""
from __future__ import annotations

import math

import jax
import pytest
import numpy as np

from jaxloop.mapspace import prime_list
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from jaxloop.evaluator import Evaluator
from jaxloop.spec import types as spt
from jaxloop.structure import build_params, build_structure
from jaxloop.types import Mapping

# No shrinking: each example compiles the model, so shrinking a failure
# would take many minutes; the derandomized failing example is printed.
# No example database: the suite writes nothing outside temporary folders.
SETTINGS = dict(deadline=None, derandomize=True, database=None,
                phases=[Phase.explicit, Phase.reuse, Phase.generate],
                suppress_health_check=[HealthCheck.too_slow,
                                       HealthCheck.data_too_large])
BATCH = 48


# ---------------------------------------------------------------------------
# Random problems.


@st.composite
def gemm_problems(draw):
  m, n, k = (draw(st.integers(1, 12)) for _ in range(3))
  dims = ("M", "N", "K")
  return spt.Problem(
      name="gemm", dims=dims, bounds=(m, n, k),
      dataspaces=(
          spt.DataSpace("A", (((1, 0),), ((1, 2),))),
          spt.DataSpace("B", (((1, 2),), ((1, 1),))),
          spt.DataSpace("Z", (((1, 0),), ((1, 1),)), read_write=True)))


@st.composite
def conv_problems(draw):
  """A 1-D or 2-D convolution with random strides and dilations."""
  two_d = draw(st.booleans())
  dims = ["C", "M", "R", "P"] + (["S", "Q"] if two_d else []) + ["N"]
  bounds = {"C": draw(st.integers(1, 6)), "M": draw(st.integers(1, 6)),
            "R": draw(st.integers(1, 3)), "P": draw(st.integers(1, 7)),
            "S": draw(st.integers(1, 3)), "Q": draw(st.integers(1, 5)),
            "N": draw(st.integers(1, 2))}
  stride = draw(st.integers(1, 3))
  dilation = draw(st.integers(1, 2))
  ix = {d: i for i, d in enumerate(dims)}
  w_ranks = [((1, ix["C"]),), ((1, ix["M"]),), ((1, ix["R"]),)]
  i_ranks = [((1, ix["N"]),), ((1, ix["C"]),),
             ((dilation, ix["R"]), (stride, ix["P"]))]
  o_ranks = [((1, ix["N"]),), ((1, ix["M"]),), ((1, ix["P"]),)]
  if two_d:
    w_ranks.append(((1, ix["S"]),))
    i_ranks.append(((1, ix["S"]), (stride, ix["Q"])))
    o_ranks.append(((1, ix["Q"]),))
  return spt.Problem(
      name="conv", dims=tuple(dims), bounds=tuple(bounds[d] for d in dims),
      dataspaces=(spt.DataSpace("Weights", tuple(w_ranks)),
                  spt.DataSpace("Inputs", tuple(i_ranks)),
                  spt.DataSpace("Outputs", tuple(o_ranks), read_write=True)),
      coefficients=(("Wstride", stride), ("Wdilation", dilation)))


# ---------------------------------------------------------------------------
# Random architectures.


@st.composite
def specs(draw):
  """A Spec: random problem, 2-4 storage levels, fan-outs, ERT."""
  problem = draw(st.one_of(gemm_problems(), conv_problems()))
  n = draw(st.integers(2, 4))
  fan = st.sampled_from([1, 1, 1, 2, 3, 4])
  # fanouts[i]: (x, y) fan-out from storage level i (innermost first) to the
  # level below it (the MACs for i = 0).  The outermost level has one
  # instance.
  fanouts = [(draw(fan), draw(fan)) for _ in range(n)]
  mesh_x, mesh_y = [1] * n, [1] * n
  for i in reversed(range(n - 1)):
    mesh_x[i] = mesh_x[i + 1] * fanouts[i + 1][0]
    mesh_y[i] = mesh_y[i + 1] * fanouts[i + 1][1]
  energy = st.floats(0.0, 50.0, allow_nan=False, allow_infinity=False)
  levels, entries = [], []
  for i in range(n):
    top = i == n - 1
    name = "DRAM" if top else f"L{i}"
    word_bits = draw(st.sampled_from([8, 16]))
    levels.append(spt.StorageLevel(
        name=name, cls="DRAM" if top else draw(st.sampled_from(
            ["SRAM", "regfile"])),
        instances=mesh_x[i] * mesh_y[i], mesh_x=mesh_x[i], mesh_y=mesh_y[i],
        depth=None if top else draw(st.sampled_from([4, 64, 4096, 2**20])),
        word_bits=word_bits, block_size=draw(st.sampled_from([1, 1, 2, 4])),
        read_bandwidth=draw(st.sampled_from([None, None, 1.0, 4.0])),
        write_bandwidth=draw(st.sampled_from([None, None, 2.0])),
        multiple_buffering=draw(st.sampled_from([1.0, 2.0])),
        ert_name=name))
    entries.append((name, (
        spt.ActionEnergy("read", draw(energy)),
        spt.ActionEnergy("write", draw(energy)),
        spt.ActionEnergy("update", draw(energy)),
        spt.ActionEnergy("leak", draw(st.sampled_from([0.0, 0.01]))))))
  cx, cy = mesh_x[0] * fanouts[0][0], mesh_y[0] * fanouts[0][1]
  mac = spt.ArithmeticLevel(name="MAC", cls="intmac", instances=cx * cy,
                            mesh_x=cx, mesh_y=cy, ert_name="MAC")
  entries.append(("MAC", (spt.ActionEnergy("compute", draw(energy)),)))
  arch = spt.Architecture(storage=tuple(levels), arithmetic=mac)
  return spt.Spec(problem=problem, arch=arch,
                  ert=spt.EnergyTable(tuple(entries)),
                  sources=("<hypothesis>",))


# ---------------------------------------------------------------------------
# Random legal mappings.




def legal_mappings(structure, n: int, seed: int) -> Mapping:
  """n perfect factorizations within the fan-outs; random orders and keeps."""
  rng = np.random.default_rng(seed)
  L, D, S = structure.num_levels, structure.num_dims, structure.num_dataspaces
  arrays = {k: np.ones((n, L, D), np.int64) for k in "txy"}
  fan = {"x": structure.fanout_x, "y": structure.fanout_y}
  for b in range(n):
    used = {(l, a): 1 for l in range(L) for a in "xy"}
    for d, bound in enumerate(structure.dim_bounds):
      for p in prime_list(bound):
        slots = [(l, "t") for l in range(L)]
        slots += [(l, a) for l in range(L) for a in "xy"
                  if used[(l, a)] * p <= fan[a][l]]
        l, kind = slots[rng.integers(len(slots))]
        arrays[kind][b, l, d] *= p
        if kind != "t":
          used[(l, kind)] *= p
  order = np.argsort(rng.random((n, L, D)), axis=-1).astype(np.int32)
  keep = rng.random((n, L, S)) < 0.6
  keep[:, -1, :] = True
  return Mapping(temporal=arrays["t"], spatial_x=arrays["x"],
                 spatial_y=arrays["y"], order=order, keep=keep)


# ---------------------------------------------------------------------------
# Properties.


def _dataspace_size(structure, s: int) -> int:
  size = 1
  for terms in structure.rank_terms[s]:
    if terms:
      size *= sum(c * (structure.dim_bounds[d] - 1) for d, c in terms) + 1
  return size


def check_invariants(structure, mappings: Mapping, stats) -> None:
  """Asserts the properties listed in the module docstring on a batch."""
  m = jax.tree.map(np.asarray, mappings)
  s = jax.tree.map(np.asarray, stats)
  for field in ("reads", "fills", "updates", "temporal_reductions",
                "utilized_capacity", "utilized_instances", "energy",
                "leakage", "level_energy", "level_cycles", "computes",
                "compute_energy", "cycles", "energy_total", "utilization",
                "compute_utilized_instances"):
    v = np.asarray(getattr(s, field), np.float64)
    assert np.all(np.isfinite(v)), field
    assert np.all(v >= 0), field
  assert np.all(s.factors_ok) and np.all(s.fanout_ok)
  ops = math.prod(structure.dim_bounds)
  assert np.all(s.computes == ops)
  assert np.all(s.compute_utilized_instances <= structure.compute_instances)
  np.testing.assert_allclose(s.level_energy.sum(-1) + s.compute_energy,
                             s.energy_total, rtol=1e-9, atol=1e-9)
  np.testing.assert_allclose(s.energy.sum(-1) + s.leakage, s.level_energy,
                             rtol=1e-9, atol=1e-9)
  assert np.all(s.cycles * structure.compute_instances >= ops - 1e-6)
  assert np.all(s.utilization <= 1 + 1e-9) and np.all(s.utilization > 0)

  L, S = structure.num_levels, structure.num_dataspaces
  inst = np.asarray(structure.instances)
  assert np.all(s.utilized_instances <= inst[None, :, None])
  off = ~m.keep
  for name in ("reads", "fills", "updates", "utilized_capacity"):
    assert np.all(getattr(s, name)[off] == 0), f"{name} at a bypassed level"
  top = L - 1
  assert np.all(s.fills[:, top] == 0)
  total = lambda a, b, l, d: a[b, l, d] * s.utilized_instances[b, l, d]
  for b in range(m.keep.shape[0]):
    for d in range(S):
      assert s.utilized_capacity[b, top, d] == _dataspace_size(structure, d)
      kept = [l for l in range(L) if m.keep[b, l, d]]
      rw = structure.read_write[d]
      inner = kept[0]
      # Link transfers (children passing data to mesh neighbours) add reads
      # and fills at the children and remove reads at the parent; the flow
      # bounds below hold where no link below or at the parent is used.
      linked = lambda lo, hi: np.any(s.link_transfers[b, lo:hi + 1, d] > 0)
      served = total(s.updates if rw else s.reads, b, inner, d)
      if not linked(0, min(inner + 1, L - 1)):
        assert served <= ops, (b, d, served, ops)
      for c, p in zip(kept[:-1], kept[1:]):
        assert s.utilized_capacity[b, c, d] <= s.utilized_capacity[b, p, d]
        if linked(c, min(p + 1, L - 1)):
          continue
        if rw:
          assert total(s.updates, b, p, d) <= total(s.updates, b, c, d)
        else:
          fan = inst[c] // inst[p]
          fills, reads = total(s.fills, b, c, d), total(s.reads, b, p, d)
          assert reads <= fills <= reads * fan, (b, d, c, p, reads, fills)


def _setup(spec):
  structure = build_structure(spec)
  return structure, build_params(spec, structure)


@pytest.mark.slow
@settings(max_examples=20, **SETTINGS)
@given(spec=specs(), seed=st.integers(0, 2**31 - 1))
def test_random_mappings_satisfy_invariants(spec, seed):
  structure, params = _setup(spec)
  mappings = legal_mappings(structure, BATCH, seed)
  stats = Evaluator(structure, params)(mappings)
  check_invariants(structure, mappings, stats)


@pytest.mark.slow
@settings(max_examples=3, **SETTINGS)
@given(spec=specs(), seed=st.integers(0, 2**31 - 1))
def test_results_independent_of_batch_size_and_position(spec, seed):
  structure, params = _setup(spec)
  mappings = legal_mappings(structure, BATCH, seed)
  ev = Evaluator(structure, params)
  fn = lambda p, m: ev(m, p)
  base = jax.tree.map(np.asarray, fn(params, mappings))
  # Same size, permuted: no recompilation, results follow the permutation.
  perm = np.random.default_rng(seed).permutation(BATCH)
  permuted = jax.tree.map(np.asarray,
                          fn(params, jax.tree.map(lambda x: x[perm],
                                                  mappings)))
  # Another batch size: the batch padded with copies of its first mapping.
  padded_in = jax.tree.map(
      lambda x: np.concatenate([x, np.repeat(x[:1], 13, axis=0)]), mappings)
  padded = jax.tree.map(np.asarray, fn(params, padded_in))
  one = jax.tree.map(np.asarray, ev(
      jax.tree.map(lambda x: x[perm[0]], mappings)))
  for field in ("reads", "fills", "updates", "utilized_capacity",
                "utilized_instances", "cycles", "valid", "energy_total",
                "energy"):
    want = getattr(base, field)
    np.testing.assert_allclose(getattr(permuted, field), want[perm],
                               rtol=1e-12, err_msg=field)
    np.testing.assert_allclose(getattr(padded, field)[:BATCH], want,
                               rtol=1e-12, err_msg=field)
    np.testing.assert_allclose(getattr(padded, field)[BATCH:],
                               np.repeat(want[:1], 13, axis=0), rtol=1e-12,
                               err_msg=field)
    np.testing.assert_allclose(getattr(one, field), want[perm[0]],
                               rtol=1e-9, err_msg=field)
