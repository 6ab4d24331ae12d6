"""The evolutionary search on the device (jaxloop.mapper.device_evolve):
its moves and hash against the host's, reproducibility, exact re-evaluation
and legality of what it reports, and the optimum of a small space."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxloop
from jaxloop import api
from jaxloop.mapper import search
from jaxloop.mapper import device_moves as mv
from jaxloop.mapper.objective import objective_keys
from jaxloop.mapspace import Genome
from jaxloop.precision import exact
from jaxloop.spec import types as spt

BATCH = 256


def _small_gemm() -> api.Workload:
  """A 2x3x2 GEMM on a 3-level hierarchy (register file with a 2x2 fan-out
  of MACs, buffer, DRAM): a space of a few thousand mappings."""
  levels = [spt.StorageLevel(
      name=name, cls="DRAM" if name == "DRAM" else "SRAM",
      instances=inst, mesh_x=mx, mesh_y=my, depth=depth, word_bits=16,
      block_size=1, ert_name=name)
      for name, inst, mx, my, depth in (("RF", 4, 2, 2, 16),
                                        ("Buffer", 1, 1, 1, 256),
                                        ("DRAM", 1, 1, 1, None))]
  energy = {"RF": 0.5, "Buffer": 3.0, "DRAM": 100.0}
  entries = [(name, tuple(spt.ActionEnergy(a, energy[name])
                          for a in ("read", "write", "update")))
             for name in energy] + [("MAC", (spt.ActionEnergy("compute",
                                                              1.0),))]
  problem = spt.Problem(
      name="gemm", dims=("M", "N", "K"), bounds=(2, 3, 2),
      dataspaces=(
          spt.DataSpace("A", (((1, 0),), ((1, 2),))),
          spt.DataSpace("B", (((1, 2),), ((1, 1),))),
          spt.DataSpace("Z", (((1, 0),), ((1, 1),)), read_write=True)))
  arch = spt.Architecture(
      storage=tuple(levels),
      arithmetic=spt.ArithmeticLevel(name="MAC", cls="intmac", instances=4,
                                     mesh_x=2, mesh_y=2, ert_name="MAC"))
  spec = spt.Spec(problem=problem, arch=arch,
                  ert=spt.EnergyTable(tuple(entries)), sources=("<test>",))
  return api.workload_of(spec)


def _brute_force_edp(wl) -> float:
  ev = jaxloop.evaluator(wl, stats=("energy_total", "cycles", "valid"))
  best = np.inf
  for m in wl.mapspace.enumerate_chunks(65536):
    best = min(best, float(objective_keys(ev(m), ("edp",))[:, 0].min()))
  return best


@exact
def _device_genomes(ms, g: Genome) -> tuple:
  return tuple(jnp.asarray(a) for a in (g.fidx, g.order, g.keep))


def test_moves_stay_in_the_space_and_hash_as_on_the_host(example):
  ms = example.mapspace
  L = ms.structure.num_levels
  t = mv.MoveTables.of(ms)
  g = ms.sample_genome(np.random.default_rng(0), 512)

  @exact
  def run():
    dg = _device_genomes(ms, g)
    h = np.asarray(mv.canonical_hash(t, dg, L))
    moved = mv.mutate(t, jax.random.PRNGKey(1), dg, L)
    return h, Genome(*(np.asarray(a) for a in moved))

  h, moved = run()
  np.testing.assert_array_equal(h, ms.canonical_hash(g))
  assert ms.spatial_ok(moved).all()
  # Every moved genome decodes to a mapping of the space (encode finds its
  # factorization rows); most moves change the mapping.
  for i in range(0, 512, 37):
    ms.encode(jax.tree.map(lambda a: a[0], ms.decode(moved.take([i]))))
  assert (ms.canonical_hash(moved) != h).mean() > 0.5
  keep_rule = ms.keep_rule[None]
  assert (moved.keep[:, keep_rule[0] == 1]).all()
  assert not (moved.keep[:, keep_rule[0] == 0]).any()


def test_same_seed_same_result_and_exact_reports(example):
  kw = dict(budget=5 * BATCH, batch=BATCH, progress=False, device=True)
  a = search(example, "evolve", seed=5, **kw)
  b = search(example, "evolve", seed=5, **kw)
  c = search(example, "evolve", seed=6, **kw)
  assert a.method == "evolve" and a.stop_reason == "budget"
  assert a.evaluated == 5 * BATCH and 0 < a.legal <= a.evaluated
  assert [r["evaluated"] for r in a.log] == [BATCH * i for i in range(1, 6)]
  assert a.log == [dict(r, time_s=x["time_s"]) for r, x in zip(b.log, a.log)]
  assert a.best_objective == b.best_objective
  assert [k for k, _, _ in a.topk] == [k for k, _, _ in b.topk]
  assert c.log != a.log
  ms = example.mapspace
  ev = jaxloop.evaluator(example)
  keys = [k for k, _, _ in a.topk]
  assert len(keys) == 10 and keys == sorted(keys)
  hashes = set()
  for key, m, stats in a.topk:
    hashes.add(int(ms.canonical_hash(ms.encode(m))[0]))    # in the space
    again = ev(jax.tree.map(lambda x: np.asarray(x)[None], m))
    assert bool(again.valid[0]) and bool(stats.valid)
    assert float(again.energy_total[0]) == float(stats.energy_total)
    assert float(again.cycles[0]) == float(stats.cycles)
    assert key == (float(objective_keys(again, ("edp",))[0, 0]),)
  assert len(hashes) == 10
  assert a.log[-1]["best_objective"] == a.best_objective[0]


def test_finds_the_brute_force_optimum_of_a_small_space():
  wl = _small_gemm()
  size = wl.mapspace.size()["total"]
  assert 100_000 <= size <= 2_000_000
  r = search(wl, "evolve", budget=32 * BATCH, batch=BATCH, seed=0,
             progress=False, device=True)
  assert r.best_objective[0] == _brute_force_edp(wl)


def test_device_flag(example):
  with pytest.raises(ValueError, match="on-device evolutionary"):
    search(example, "evolve", budget=BATCH, batch=BATCH, progress=False,
           device=True, objective="delay,energy")
  h = search(example, "evolve", budget=BATCH, batch=BATCH, progress=False,
             device=False)
  assert h.evaluated == BATCH and h.best_stats.valid
