"""The proof search against brute force, and each pruning rule alone.

Random small problems (GEMMs and strided 1-D convolutions) on random 2-3
level hierarchies with fan-outs are built in memory; each architecture is
then varied as data (capacities, ERT energies, leakage, min_utilization)
and as constraints (fixed or free keep bits, fixed innermost loops), which
changes the mapspace and the optimum without compiling the model again.
Brute force is the whole space with nothing merged: every factorization,
every order of every level's free loops, every keep choice, evaluated with
the exact model.
"""
from __future__ import annotations

import dataclasses
import itertools
import math

import numpy as np
import pytest

from jaxloop import api
from jaxloop.mapper import pruning, search
from jaxloop.mapper.driver import fixed_batch_evaluator
from jaxloop.mapper.objective import objective_keys
from jaxloop.mapper.proof import PROOF_STATS
from jaxloop.mapspace import (Genome, Mapspace, _dim_space, _open_rules,
                              _spatial_slots)
from jaxloop.spec import types as spt
from jaxloop.structure import build_params, build_structure

BATCH = 128
MAX_SPACE = 6_000      # brute-force spaces at most this many mappings
STRUCTURES = 3          # distinct structures (each compiles the model)
VARIANTS = 70           # data/constraint variants of each (>= 200 in all)
OBJECTIVES = (("edp",), ("energy",), ("delay",), ("delay", "energy"))


# ------------------------------------------------------------ random specs
def _problem(rng) -> spt.Problem:
  if rng.random() < 0.5:
    m, n, k = (int(rng.integers(1, 6)) for _ in range(3))
    return spt.Problem(
        name="gemm", dims=("M", "N", "K"), bounds=(m, n, k),
        dataspaces=(
            spt.DataSpace("A", (((1, 0),), ((1, 2),))),
            spt.DataSpace("B", (((1, 2),), ((1, 1),))),
            spt.DataSpace("Z", (((1, 0),), ((1, 1),)), read_write=True)))
  stride = int(rng.integers(1, 3))
  bounds = (int(rng.integers(1, 4)), int(rng.integers(1, 3)),
            int(rng.integers(1, 4)), int(rng.integers(1, 5)))
  stride = stride if bounds[2] > 1 else 2   # R = 1: a strided gap
  return spt.Problem(
      name="conv", dims=("C", "M", "R", "P"), bounds=bounds,
      dataspaces=(
          spt.DataSpace("Weights", (((1, 0),), ((1, 1),), ((1, 2),))),
          spt.DataSpace("Inputs", (((1, 0),), ((1, 2), (stride, 3)))),
          spt.DataSpace("Outputs", (((1, 1),), ((1, 3),)), read_write=True)),
      coefficients=(("Wstride", stride),))


def _spec(rng, levels: int) -> spt.Spec:
  """A random problem on ``levels`` storage levels with random fan-outs."""
  n = levels
  fanouts = [(int(rng.choice([1, 1, 2, 3])), int(rng.choice([1, 1, 2])))
             for _ in range(n)]
  fanouts[-1] = (1, 1) if rng.random() < 0.5 else fanouts[-1]
  mesh_x, mesh_y = [1] * n, [1] * n
  for i in reversed(range(n - 1)):
    mesh_x[i] = mesh_x[i + 1] * fanouts[i + 1][0]
    mesh_y[i] = mesh_y[i + 1] * fanouts[i + 1][1]
  levels, entries = [], []
  for i in range(n):
    top = i == n - 1
    name = "DRAM" if top else f"L{i}"
    levels.append(spt.StorageLevel(
        name=name, cls="DRAM" if top else "SRAM",
        instances=mesh_x[i] * mesh_y[i], mesh_x=mesh_x[i], mesh_y=mesh_y[i],
        depth=None if top else 4096, word_bits=16,
        block_size=int(rng.choice([1, 1, 2])),
        read_bandwidth=None if rng.random() < 0.6 else float(
            rng.choice([1.0, 2.0])),
        write_bandwidth=None if rng.random() < 0.7 else 2.0,
        ert_name=name))
    entries.append((name, tuple(spt.ActionEnergy(a, 1.0) for a in
                                ("read", "write", "update", "leak"))))
  cx, cy = mesh_x[0] * fanouts[0][0], mesh_y[0] * fanouts[0][1]
  entries.append(("MAC", (spt.ActionEnergy("compute", 1.0),)))
  arch = spt.Architecture(
      storage=tuple(levels),
      arithmetic=spt.ArithmeticLevel(name="MAC", cls="intmac",
                                     instances=cx * cy, mesh_x=cx, mesh_y=cy,
                                     ert_name="MAC"))
  return spt.Spec(problem=_problem(rng), arch=arch,
                  ert=spt.EnergyTable(tuple(entries)), sources=("<random>",))


def _variant(rng, spec, structure, base) -> api.Workload:
  """Random energies, capacities, leakage and min_utilization (data), and
  random fixed keep bits and innermost loops (constraints)."""
  L = structure.num_levels
  e = lambda: rng.uniform(0.0, 10.0, L)
  cap = np.asarray(base.capacity, np.float64).copy()
  cap[:-1] = rng.choice([1.0, 2.0, 4.0, 8.0, 16.0, 64.0] + [np.inf] * 4,
                        L - 1)
  minu = np.where(np.isfinite(cap) & (rng.random(L) < 0.2), 0.25, 0.0)
  leak = np.where(rng.random(L) < 0.3, 0.01, 0.0)
  params = dataclasses.replace(
      base, read_energy=e(), fill_energy=e(), update_energy=e(),
      leak_energy=leak, compute_energy=np.float64(rng.uniform(0.0, 2.0)),
      capacity=cap, min_utilization=minu)
  rules = _open_rules(structure)
  for l in range(L - 1):
    for s in range(structure.num_dataspaces):
      if not structure.is_dummy[l]:
        rules.keep_rule[l, s] = rng.choice([-1, -1, 0, 1])
  for l in range(L):
    if not structure.is_dummy[l] and rng.random() < 0.6:
      fixed = int(rng.integers(1, structure.num_dims))
      rules.prefix[l] = tuple(int(d) for d in
                              rng.permutation(structure.num_dims)[:fixed])
  slots, caps = _spatial_slots(structure)
  dims = [_dim_space(structure, d, rules.dims[d], slots, caps)
          for d in range(structure.num_dims)]
  ms = Mapspace(structure, dims, tuple(rules.prefix), rules.keep_rule,
                slots, caps)
  wl = api.Workload(spec=spec, structure=structure, params=params)
  wl.__dict__["mapspace"] = ms
  return wl


# ------------------------------------------------------------ brute force
def _all_genomes(ms: Mapspace) -> Genome:
  """The whole space, nothing merged."""
  s = ms.structure
  keeps = pruning.keep_choices(ms)
  per_level = [[tuple(ms.prefix[l]) + p for p in
                itertools.permutations(ms.free_order[l])]
               if not s.is_dummy[l] else [tuple(range(s.num_dims))]
               for l in range(s.num_levels)]
  orders = np.asarray(list(itertools.product(*per_level)),
                      np.int32).reshape(-1, s.num_levels, s.num_dims)
  parts = [pruning.genomes(np.asarray(f, np.int64), orders, keeps)
           for f in ms._factor_combos()]
  return Genome.concat(parts)


@dataclasses.dataclass
class Case:
  wl: api.Workload
  genomes: Genome
  stats: object       # numpy Stats (PROOF_STATS) of every genome


def _cases():
  """STRUCTURES random structures, VARIANTS variants of each whose whole
  space holds 50..MAX_SPACE mappings."""
  rng = np.random.default_rng(20261202)
  made, done = [], 0
  while done < STRUCTURES:
    spec = _spec(rng, levels=2 + done % 2)
    structure = build_structure(spec)
    base = build_params(spec, structure)
    got = []
    for _ in range(6 * VARIANTS):
      wl = _variant(rng, spec, structure, base)
      if 50 <= wl.mapspace.size()["total"] <= MAX_SPACE:
        got.append(wl)
      if len(got) == VARIANTS:
        break
    if len(got) < VARIANTS:
      continue                 # too large or too small a problem: redraw
    done += 1
    for wl in got:
      g = _all_genomes(wl.mapspace)
      run = fixed_batch_evaluator(wl, BATCH, PROOF_STATS)
      made.append(Case(wl, g, run(wl.mapspace.decode(g))))
  return made


@pytest.fixture(scope="module")
def cases():
  return _cases()


def _lex_min(keys: np.ndarray):
  """The lexicographically smallest row of ``keys [B, M]`` (None if all
  are inf)."""
  best = keys[np.lexsort(keys.T[::-1])[0]]
  return None if np.isinf(best[0]) else tuple(float(x) for x in best)


def _classes(case: Case, merge_innermost: bool) -> np.ndarray:
  """``[B]`` class ids: rows equal in factorization, keep bits and the
  sequence of loops of factor > 1 at each level (and, with
  ``merge_innermost``, ignoring level 0's order)."""
  ms, g = case.wl.mapspace, case.genomes
  temporal = pruning.temporal_factors(ms, g.fidx)                # [B, L, D]
  t_in_order = np.take_along_axis(temporal, g.order.astype(np.int64), -1)
  active_seq = np.where(t_in_order > 1, g.order, -1)             # [B, L, D]
  # the active loops in order, padding moved to the end (stable)
  pos = np.argsort(active_seq < 0, axis=-1, kind="stable")
  seq = np.take_along_axis(active_seq, pos, -1)
  if merge_innermost:
    seq[:, 0] = np.sort(seq[:, 0], axis=-1)
  cols = np.concatenate([g.fidx, seq.reshape(len(g), -1),
                         g.keep.reshape(len(g), -1)], axis=1)
  return np.unique(cols, axis=0, return_inverse=True)[1].reshape(-1)


def _constant_within(classes: np.ndarray, values: np.ndarray) -> bool:
  order = np.argsort(classes, kind="stable")
  c, v = classes[order], values[order]
  same = c[1:] == c[:-1]
  return bool(np.all(v[1:][same] == v[:-1][same]))


# ------------------------------------------------------------------ tests
def test_enough_random_cases(cases):
  assert len(cases) >= 200
  assert len({c.wl.structure for c in cases}) == STRUCTURES


def test_proof_equals_brute_force(cases):
  """The certified optimum of every case is brute force's, and every
  mapping of the space is accounted for by evaluation or one rule; every
  rule prunes in some case."""
  fired = dict.fromkeys(pruning.RULES, 0)
  for i, case in enumerate(cases):
    names = OBJECTIVES[i % len(OBJECTIVES)]
    # one factorization per chunk in every other case: the bound of a
    # chunk then uses an incumbent from the chunks before it
    r = search(case.wl, "proof", objective=names, topk=1, progress=False,
               batch=BATCH, chunk=1 if i % 2 else 4096)
    brute = _lex_min(objective_keys(case.stats, names))
    ev = r.evidence
    assert r.certified and r.gap == 0.0, (i, ev)
    assert ev["unexplored"] == 0
    assert ev["evaluated"] + sum(ev["pruned"].values()) == ev["space"]
    assert ev["space"] == len(case.genomes)
    for rule, n in ev["pruned"].items():
      fired[rule] += n > 0
    if brute is None:
      assert r.best_objective is None, i
      continue
    assert r.best_objective == pytest.approx(brute, rel=1e-12, abs=0), (
        i, names, r.best_objective, brute, ev)
    # the reported mapping re-evaluates to the reported numbers
    again = case.wl.evaluate(r.best_mapping)
    assert float(again.energy_total) == float(r.best_stats.energy_total)
    assert float(again.cycles) == float(r.best_stats.cycles)
  fired["top_level"] += 1      # exercised by test_top_level_prunes
  assert all(fired.values()), fired


def test_unit_loops_rule(cases):
  """Orders that differ only where unit loops sit give the same numbers."""
  for case in cases:
    cls = _classes(case, merge_innermost=False)
    for field in ("energy_total", "cycles", "valid"):
      assert _constant_within(cls, np.asarray(getattr(case.stats, field)))


def test_innermost_order_rule(cases):
  """Where the rule applies, level 0's loop order changes no number."""
  applied = 0
  for case in cases:
    if not pruning.innermost_order_free(case.wl.mapspace):
      continue
    applied += 1
    cls = _classes(case, merge_innermost=True)
    for field in ("energy_total", "cycles", "valid", "utilized_capacity"):
      values = np.asarray(getattr(case.stats, field)).reshape(len(cls), -1)
      for col in values.T:
        assert _constant_within(cls, col)
  assert applied >= 50


def test_top_level_rule(cases):
  """The outermost level's access energy for a data space the level under
  it keeps depends only on (factorization, keep, outermost order)."""
  checked = 0
  for case in cases:
    ms, g = case.wl.mapspace, case.genomes
    floor = pruning.energy_floor(ms, case.wl.params)
    top = pruning.TopLevel(ms, floor, case.wl.params)
    mask = top.exact_mask(g.keep.astype(bool))                    # [B, S]
    cols = np.concatenate([g.fidx, g.keep.reshape(len(g), -1),
                           g.order[:, top.top]], axis=1)
    cls = np.unique(cols, axis=0, return_inverse=True)[1].reshape(-1)
    energy = np.asarray(case.stats.energy)[:, top.top]            # [B, S]
    fills = np.asarray(case.stats.fills)[:, top.top - 1]          # [B, S]
    for k in range(energy.shape[1]):
      rows = mask[:, k]
      checked += int(rows.sum())
      assert _constant_within(cls[rows], energy[rows, k])
      assert _constant_within(cls[rows], fills[rows, k])
  assert checked > 10_000


def test_innermost_keeper_reads_are_order_free(cases):
  """Where a data space's innermost keeper l0 and the level above it have
  no fan-out, reads and updates of l0 are the same for every loop order
  of a (factorization, keep), and at least the serving floor's counts."""
  checked = 0
  for case in cases:
    ms, g, st = case.wl.mapspace, case.genomes, case.stats
    floor = pruning.energy_floor(ms, case.wl.params)
    top = pruning.TopLevel(ms, floor, case.wl.params)
    l0, free = top.exact_l0(g.keep.astype(bool))                  # [B, S]
    cls = np.unique(np.concatenate([g.fidx, g.keep.reshape(len(g), -1)],
                                   axis=1), axis=0,
                    return_inverse=True)[1].reshape(-1)
    valid = np.asarray(st.valid, bool)
    c0 = np.prod(pruning.temporal_factors(ms, g.fidx), axis=(1, 2))
    rw = np.asarray(ms.structure.read_write, bool)
    for s in range(l0.shape[1]):
      rows = free[:, s]
      at = np.arange(len(g))[rows], l0[rows, s], s
      reads, updates = (np.asarray(getattr(st, f))[at]
                        for f in ("reads", "updates"))
      checked += int(rows.sum())
      assert _constant_within(cls[rows], reads)
      assert _constant_within(cls[rows], updates)
      legal = valid[rows]
      if rw[s]:
        assert np.all(updates[legal] == c0[rows][legal])
      else:
        assert np.all(reads[legal] >= c0[rows][legal])
  assert checked > 10_000, checked


def test_top_level_prunes_and_agrees_with_brute_force():
  """A space where the outermost level dominates the energy: the
  top_level rule prunes, and the optimum is still brute force's."""
  spec = _spec(np.random.default_rng(5), levels=3)
  spec = dataclasses.replace(spec, problem=dataclasses.replace(
      _problem(np.random.default_rng(0)), name="gemm", dims=("M", "N", "K"),
      bounds=(4, 6, 4), dataspaces=(
          spt.DataSpace("A", (((1, 0),), ((1, 2),))),
          spt.DataSpace("B", (((1, 2),), ((1, 1),))),
          spt.DataSpace("Z", (((1, 0),), ((1, 1),)), read_write=True)),
      coefficients=()))
  s = build_structure(spec)
  wl = api.Workload(spec=spec, structure=s, params=build_params(spec, s))
  rules = _open_rules(s)
  rules.keep_rule[:] = 1
  rules.prefix[0] = tuple(range(s.num_dims))
  slots, caps = _spatial_slots(s)
  ms = Mapspace(s, [_dim_space(s, d, rules.dims[d], slots, caps)
                    for d in range(s.num_dims)], tuple(rules.prefix),
                rules.keep_rule, slots, caps)
  L = s.num_levels
  energy = np.asarray([1.0] * (L - 1) + [200.0])
  params = dataclasses.replace(
      wl.params, read_energy=energy, fill_energy=energy,
      update_energy=energy,
      capacity=np.asarray([4.0] + [24.0] * (L - 2) + [np.inf]),
      min_utilization=np.zeros(L))
  big = api.Workload(spec=wl.spec, structure=s, params=params)
  big.__dict__["mapspace"] = ms
  g = _all_genomes(ms)
  assert len(g) <= 20 * MAX_SPACE
  stats = fixed_batch_evaluator(big, BATCH, PROOF_STATS)(ms.decode(g))
  for names in (("energy",), ("edp",)):
    r = search(big, "proof", objective=names, topk=1, progress=False,
               batch=BATCH, chunk=1)
    assert r.certified
    assert r.evidence["pruned"]["top_level"] > 0, r.evidence
    assert r.best_objective == pytest.approx(
        _lex_min(objective_keys(stats, names)), rel=1e-12, abs=0)


def test_capacity_rule(cases):
  """Validity is the capacity fit of (factorization, keep): the loop
  orders never change it."""
  from jaxloop.mapper.proof import _tile_words
  for case in cases:
    ms, g = case.wl.mapspace, case.genomes
    tiles = _tile_words(case.wl, BATCH, None)(g.fidx)
    keeps = g.keep.astype(bool)
    dummy = np.asarray(ms.structure.is_dummy)[None, :, None]
    used = np.sum(tiles * (keeps & ~dummy), axis=-1)
    cap = np.asarray(case.wl.params.capacity, np.float64)
    floor = np.where(np.isfinite(cap), cap, 0.0) * np.asarray(
        case.wl.params.min_utilization)
    fits = np.all((used <= cap) & ((used >= floor) | ~np.isfinite(cap)),
                  axis=-1)
    assert np.array_equal(fits, np.asarray(case.stats.valid, bool))
    one = pruning.capacity_fits(ms, case.wl.params, tiles[:1], keeps[:1])
    assert bool(one[0, 0]) == bool(fits[0])


def _touched_by_enumeration(structure) -> list[int]:
  """Words of each data space touched by some point of the op space."""
  points = np.indices(structure.dim_bounds).reshape(
      len(structure.dim_bounds), -1).T                           # [P, D]
  out = []
  for s in range(structure.num_dataspaces):
    coef = np.asarray(structure.projection[s])                    # [R, D]
    out.append(len(np.unique(points @ coef.T, axis=0)))
  return out


def test_touched_words(cases):
  for structure in {c.wl.structure for c in cases}:
    assert pruning.touched_words(structure) == _touched_by_enumeration(
        structure)
  for c1, n1, c2, n2 in [(1, 3, 2, 4), (1, 1, 2, 5), (2, 3, 3, 4),
                         (1, 2, 4, 3), (3, 5, 1, 7)]:
    values = {c1 * i + c2 * j for i in range(n1) for j in range(n2)}
    assert pruning._distinct_values([(c1, n1), (c2, n2)]) == len(values)


def test_bound_rule(cases):
  """Every legal mapping costs at least the bound of its assignment, and
  the outermost level at least its compulsory traffic."""
  for case in cases:
    ms, g, st = case.wl.mapspace, case.genomes, case.stats
    s, p = ms.structure, case.wl.params
    floor = pruning.energy_floor(ms, p)
    assert floor.usable
    c0 = np.prod(pruning.temporal_factors(ms, g.fidx), axis=(1, 2))
    valid = np.asarray(st.valid, bool)
    cycles = np.asarray(st.cycles, np.float64)
    energy = np.asarray(st.energy_total, np.float64)
    assert np.all(cycles[valid] >= c0[valid])
    assert np.all(energy[valid] >= floor.energy(c0[valid]))
    # the outermost level alone: compulsory traffic plus its leakage
    top = s.num_levels - 1
    mac = float(np.prod(s.dim_bounds)) * float(p.compute_energy)
    leak_top = float(np.asarray(p.leak_energy)[top])
    compulsory = floor.fixed - mac
    level = np.asarray(st.level_energy, np.float64)[:, top]
    need = (compulsory + leak_top * c0) * (1 - pruning.ROUNDING_SLACK)
    assert np.all(level[valid] >= need[valid])
    # the assignment's compute cycles are the factorization's
    by_assign = {a.groups: a.compute_cycles
                 for a in pruning.spatial_assignments(ms)}
    groups = np.stack([ms.dims[d].group[g.fidx[:, d]]
                       for d in range(len(ms.dims))], axis=1)
    for row in range(0, len(g), 97):
      assert by_assign[tuple(int(x) for x in groups[row])] == c0[row]


def test_serving_floor(cases):
  """The innermost level keeping a data space costs at least what serving
  the computes costs (:class:`pruning.Serving`), data space by data space,
  on every legal mapping (beyond the outermost level's compulsory term
  where it is the outermost level); the rule applies in many cases."""
  applied = 0
  for case in cases:
    ms, g, st = case.wl.mapspace, case.genomes, case.stats
    floor = pruning.energy_floor(ms, case.wl.params)
    serving, top = floor.serving, ms.structure.num_levels - 1
    c0 = np.prod(pruning.temporal_factors(ms, g.fidx), axis=(1, 2))
    valid = np.asarray(st.valid, bool)
    energy = np.asarray(st.energy, np.float64)                     # [n,L,S]
    kinds, which = np.unique(g.keep, axis=0, return_inverse=True)
    l0 = serving.innermost_keepers(kinds)                          # [K, S]
    for k in range(len(kinds)):
      rows = valid & (which.reshape(-1) == k)
      if not rows.any():
        continue
      terms = serving.terms(c0[rows], kinds[k:k + 1])[:, 0]        # [n, S]
      for s in range(terms.shape[1]):
        if l0[k, s] < 0:
          continue
        have = energy[rows, l0[k, s], s]
        if l0[k, s] == top:
          have = have - floor.compulsory[s]
        assert np.all(have >= terms[:, s] * (1 - pruning.ROUNDING_SLACK)
                      - 1e-9), (k, s)
        applied += bool(np.any(terms[:, s] > 0))
  assert applied > 100, applied


def test_time_limited_run_is_not_certified(cases):
  """A run cut short (a time limit of 0 s: one batch) reports the gap to
  a valid lower bound, never an optimum; given the time, the same space
  is certified."""
  cut = 0
  for structure in {c.wl.structure: c for c in cases}.values():
    wl = structure.wl
    open_wl = api.Workload(spec=wl.spec, structure=wl.structure,
                           params=dataclasses.replace(
                               wl.params, capacity=np.full(
                                   wl.structure.num_levels, np.inf)))
    r = search(open_wl, "optimal", objective="edp", topk=1, progress=False,
               batch=BATCH, time_limit=0.0)
    ev = r.evidence
    assert ev["evaluated"] + sum(ev["pruned"].values()) + ev[
        "unexplored"] == ev["space"]
    if ev["unexplored"] == 0:
      assert r.certified          # finished within one batch
      continue
    cut += 1
    assert not r.certified and r.stop_reason == "time"
    assert r.lower_bound[0] <= r.best_objective[0]
    assert r.gap == pytest.approx(
        r.best_objective[0] / r.lower_bound[0] - 1.0)
    assert "NOT certified" in "\n".join(r.summary_lines())
    whole = search(open_wl, "proof", objective="edp", topk=1,
                   progress=False, batch=BATCH)
    assert whole.certified
    assert r.lower_bound[0] <= whole.best_objective[0] <= r.best_objective[0]
  assert cut >= 1
