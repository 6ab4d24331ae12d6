"""Tests for jaxloop.mapper: reproducibility, objectives, method choice and
options, exhaustive optimum, the ``mapper:`` section (algorithm, Timeloop's
stop rules, settings not used), the ``map`` CLI hook."""
from __future__ import annotations

import argparse
import csv
import importlib

import numpy as np
import pytest

import jaxloop
from jaxloop import api
from jaxloop.cli import main
from jaxloop.errors import SpecError
from jaxloop.mapper import (AUTO_EXHAUSTIVE_LIMIT, DEFAULT_TIME_LIMIT,
                            SEARCHES, StopRules, parse_objective,
                            resolve_method, search)
from jaxloop.mapper import rules as rules_mod
from jaxloop.mapper.cli import add_map_arguments, run_map
from jaxloop.mapper.objective import objective_keys
from jaxloop.validate import case_files

from support import EXAMPLE_FILES, reference_cases

# The package module (``jaxloop.mapper`` may name the function).
search_pkg = importlib.import_module("jaxloop.mapper")
BATCH = 256


def _same(a, b):
  assert a.best_objective == b.best_objective
  for f in ("temporal", "spatial_x", "spatial_y", "order", "keep"):
    np.testing.assert_array_equal(getattr(a.best_mapping, f),
                                  getattr(b.best_mapping, f))
  assert [r["best_objective"] for r in a.log] == [
      r["best_objective"] for r in b.log]


@pytest.mark.parametrize("method", ["random", "evolve"])
def test_same_seed_same_result(example, method):
  a = search(example, method, budget=3 * BATCH, seed=3, batch=BATCH,
             progress=False)
  b = search(example, method, budget=3 * BATCH, seed=3, batch=BATCH,
             progress=False)
  _same(a, b)
  assert a.evaluated == 3 * BATCH and a.legal > 0
  assert a.best_stats.valid
  assert len(a.topk) == 10
  keys = [k for k, _, _ in a.topk]
  assert keys == sorted(keys)
  assert len(a.log) == 3
  assert a.log[-1]["evaluated"] == 3 * BATCH


def test_objectives(example):
  assert parse_objective("edp") == ("edp",)
  assert parse_objective("delay, energy") == ("delay", "energy")
  assert parse_objective(["cycles", "energy"]) == ("delay", "energy")
  with pytest.raises(SpecError):
    parse_objective("area")
  with pytest.raises(SpecError):
    search(example, "random", budget=BATCH, objective="area")
  for obj in ("energy", "delay", ["delay", "energy"]):
    r = search(example, "random", budget=BATCH, seed=0, batch=BATCH,
               objective=obj, progress=False)
    s = r.best_stats
    first = {"energy": s.energy_total, "delay": s.cycles}[
        obj if isinstance(obj, str) else obj[0]]
    assert r.best_objective[0] == pytest.approx(float(first))
    assert len(r.best_objective) == (1 if isinstance(obj, str) else 2)


def test_evolve_uses_mutations_and_stays_legal(example):
  r = search(example, "evolve", budget=6 * BATCH, seed=1, batch=BATCH,
             progress=False)
  rnd = search(example, "random", budget=6 * BATCH, seed=1, batch=BATCH,
               progress=False)
  assert r.best_stats.valid
  # Not a guarantee in general, but holds comfortably on this spec.
  assert r.best_objective[0] <= rnd.best_objective[0]


def test_methods_and_options(example, monkeypatch):
  assert {"random", "exhaustive", "evolve", "gradient", "hybrid",
          "proof"} <= set(SEARCHES)
  assert resolve_method(example, "optimal") == "proof"
  with pytest.raises(ValueError, match="unknown search method 'annealing'"):
    search(example, "annealing", budget=BATCH)
  with pytest.raises(TypeError, match="'random'.*population"):
    search(example, "random", budget=BATCH, population=8)
  with pytest.raises(TypeError, match="'evolve'.*starts"):
    search(example, "evolve", budget=BATCH, starts=8)
  # auto: exhaustive up to the limit, evolve above it.
  size = example.mapspace.size()["total"]
  assert resolve_method(example, "auto") == (
      "exhaustive" if size <= AUTO_EXHAUSTIVE_LIMIT else "evolve")
  monkeypatch.setattr(search_pkg, "AUTO_EXHAUSTIVE_LIMIT", size)
  assert resolve_method(example, "auto") == "exhaustive"
  monkeypatch.setattr(search_pkg, "AUTO_EXHAUSTIVE_LIMIT", size - 1)
  assert resolve_method(example, "auto") == "evolve"
  assert resolve_method(example, "gradient") == "gradient"


def test_defaults_passed_to_the_method(example, monkeypatch):
  """No budget and no time limit: the default time limit (none for an
  exhaustive search); no objective: the spec's metrics, else edp."""
  calls = []

  def fake(workload, **kw):
    calls.append(kw)
    return "result"

  for name in ("random", "exhaustive"):
    monkeypatch.setitem(SEARCHES, name, fake)
  assert search(example, "random") == "result"
  assert calls[-1]["time_limit"] == DEFAULT_TIME_LIMIT
  assert calls[-1]["budget"] is None and calls[-1]["objective"] == ("edp",)
  search(example, "exhaustive", objective="delay,energy", seed=4, topk=3)
  assert calls[-1]["time_limit"] is None
  assert calls[-1]["objective"] == ("delay", "energy")
  assert (calls[-1]["seed"], calls[-1]["topk"]) == (4, 3)
  search(example, "random", budget=5)
  assert calls[-1]["time_limit"] is None and calls[-1]["budget"] == 5


def _tutorial_05(reference, variant):
  case = next(c for c in reference_cases()
              if c["name"] == f"tutorial:05-mapper-conv1d+oc-3level:{variant}")
  d = reference / case["dir"]
  files = [d / case["input"], d / case["ert"], d / case["art"]]
  reference_stats = api.load(*case_files(reference, case)).evaluate()
  return case, api.load(*files), reference_stats, files


def _brute_force(wl, names):
  """The best objective key over every mapping of the mapspace, evaluated
  with the public evaluator (no search machinery)."""
  ev = jaxloop.evaluator(wl, stats=("energy_total", "cycles", "valid"))
  best = None
  for m in wl.mapspace.enumerate_chunks(65536):
    keys = objective_keys(ev(m), names)
    row = tuple(keys[np.lexsort(keys.T[::-1])[0]])
    best = row if best is None else min(best, row)
  return best


@pytest.mark.parametrize("variant,size", [
    ("baked", 1), ("freebypass", 64),
    pytest.param("null", 13063680, marks=pytest.mark.slow)])
def test_tutorial_05_honours_its_mapper_file(reference, variant, size):
  """``algorithm: linear_pruned``, ``victory_condition: 0``, ``timeout:
  0``: an exhaustive search that runs to the end (no default time limit)
  and finds the brute-force optimum of the file's metrics."""
  case, wl, ref, _ = _tutorial_05(reference, variant)
  assert wl.spec.mapper.algorithm == "linear_pruned"
  r = search(wl, progress=False)
  assert r.method == "exhaustive" and r.time_limit is None
  assert r.rules == StopRules()          # 0: off
  assert r.objective == ("delay", "energy")
  assert r.complete and r.stop_reason == "exhausted"
  assert r.mapspace_size["total"] == size
  assert r.best_objective == _brute_force(wl, r.objective)
  # Timeloop's mapping is in the space: ours is at least as good.
  ref_e, ref_c = float(ref.energy_total), float(ref.cycles)
  e, c = float(r.best_stats.energy_total), float(r.best_stats.cycles)
  assert (c, e) <= (ref_c, ref_e * (1 + 1e-12))
  assert float(r.best_stats.edp) <= case["summary"]["edp"] * 1.005


def _timeloop_thread(rules, keys, valid, only_bypass, refused):
  """Timeloop's ``MapperThread::Run`` termination logic, one mapping at a
  time: ``(mappings taken, stop reason)``."""
  best, legal, since, invalid = None, 0, 0, 0

  def fired():
    if rules.search_size and legal >= rules.search_size:
      return "search_size"
    if rules.victory and since >= rules.victory:
      return "victory"
    if rules.timeout and invalid > 0 and invalid >= rules.timeout:
      return "timeout"
    return ""

  for i in range(len(keys)):
    if fired():
      return i, fired()
    counted = rules.penalize_bypass_fails or not only_bypass[i]
    if not valid[i]:
      invalid += bool(refused[i] or counted)
      continue
    legal, invalid = legal + 1, 0
    if best is None or tuple(keys[i]) < best:
      best, since = tuple(keys[i]), 0
    elif counted:
      since += 1
  return len(keys), fired()


def _batched(rules, keys, valid, only_bypass, refused, batch):
  """The same sequence through rules.improvements/scan, ``batch`` rows at a
  time, as the Tracker runs it."""
  counters, best, total = rules_mod.Counters(), None, 0
  for s in range(0, len(keys), batch):
    k, v = keys[s:s + batch], valid[s:s + batch]
    n, reason, counters = rules_mod.scan(
        rules, counters, v, rules_mod.improvements(best, k, v),
        only_bypass[s:s + batch], refused[s:s + batch])
    for row in k[:n][v[:n]]:
      best = row if best is None or tuple(row) < tuple(best) else best
    total += n
    if reason:
      return total, reason
  return total, ""


@pytest.mark.parametrize("seed", range(12))
def test_rules_stop_where_a_sequential_run_stops(seed):
  """Constructed sequences (ties, illegal runs, bypass-only changes,
  refused mappings): every batch size stops at Timeloop's count and
  reason."""
  rng = np.random.default_rng(seed)
  n = 400
  keys = rng.integers(0, 6, size=(n, 2)).astype(np.float64)
  keys[:, 0] += np.linspace(8, 0, n) * (seed % 2)     # improving trend
  valid = rng.random(n) < [0.9, 0.5, 0.2][seed % 3]
  keys[~valid] = np.inf
  only_bypass = rng.random(n) < 0.3
  refused = ~valid & (rng.random(n) < 0.2)
  for rules in (StopRules(victory=1 + seed), StopRules(timeout=2 + seed % 4),
                StopRules(search_size=50 + 7 * seed),
                StopRules(victory=3, timeout=3, penalize_bypass_fails=True),
                StopRules(victory=10 ** 6)):
    expect = _timeloop_thread(rules, keys, valid, only_bypass, refused)
    for batch in (1, 7, 64, n):
      got = _batched(rules, keys, valid, only_bypass, refused, batch)
      assert got == expect, (rules, batch)


def test_bypass_only():
  fidx = np.array([[0], [0], [0], [1], [1]])
  order = np.zeros((5, 1, 2), np.int32)
  keep = np.array([[0], [1], [1], [1], [0]], bool).reshape(5, 1, 1)
  assert rules_mod.bypass_only(None, fidx, order, keep).tolist() == [
      False, True, False, False, True]
  prev = (fidx[0], order[0], ~keep[0])
  assert rules_mod.bypass_only(prev, fidx[:1], order[:1], keep[:1]).tolist() \
      == [True]


def _sequence_reference(wl, rules, names, count):
  """Timeloop's stop point on the first ``count`` mappings of the
  exhaustive enumeration (evaluated with the public evaluator)."""
  g = next(wl.mapspace.enumerate_genomes(count))
  stats = jaxloop.evaluator(wl, stats=("energy_total", "cycles", "valid"))(
      wl.mapspace.decode(g))
  keys = objective_keys(stats, names)
  same = lambda a: np.all(a[1:] == a[:-1], axis=tuple(range(1, a.ndim)))
  only_bypass = np.concatenate(
      [[False, False], (same(g.fidx) & same(g.order) & ~same(g.keep))[1:]])
  return _timeloop_thread(rules, keys, np.asarray(stats.valid, bool),
                          only_bypass, np.zeros(len(g), bool))


def _tutorial_05_no_bypass(reference, tmp_path):
  """Tutorial 05 with every data space kept everywhere: one bypass choice,
  so illegal mappings count towards ``timeout`` (where bypass choices are
  free, some choice of each tile fits, and Timeloop does not count the
  others' failures)."""
  d = reference / "tutorial" / "05-mapper-conv1d+oc-3level"
  keep = tmp_path / "keep.constraints.yaml"
  keep.write_text(
      "mapspace_constraints:\n  targets:\n" + "".join(
          f"  - {{target: {t}, type: dataspace, keep: [Weights, Inputs, "
          f"Outputs]}}\n" for t in ("GlobalBuffer", "RegisterFile")))
  return api.load(d / "arch" / "3level.arch.yaml",
                  d / "prob" / "conv1d+oc.prob.yaml", keep,
                  d / "mapper" / "exhaustive.mapper.yaml")


@pytest.mark.parametrize("option,value,reason", [
    ("victory", 40, "victory"), ("timeout", 5, "timeout"),
    ("search_size", 3000, "search_size")])
def test_rules_on_the_exhaustive_walk(reference, tmp_path, option, value,
                                      reason):
  """victory / timeout / search_size stop the exhaustive walk of tutorial
  05's mapspace exactly where Timeloop's loop would, whatever the batch
  size."""
  if option == "timeout":
    wl = _tutorial_05_no_bypass(reference, tmp_path)
  else:
    _, wl, _, _ = _tutorial_05(reference, "null")
  runs = [search(wl, "exhaustive", batch=b, progress=False, **{option: value})
          for b in (256, 1024)]
  a, b = runs
  assert a.stop_reason == b.stop_reason == reason and not a.complete
  assert (a.evaluated, a.legal, a.best_objective) == (
      b.evaluated, b.legal, b.best_objective)
  assert a.log[-1]["evaluated"] == a.evaluated
  expect = _sequence_reference(wl, a.rules, a.objective, a.evaluated + 64)
  assert expect == (a.evaluated, reason)


def test_rules_come_from_the_file_and_arguments_override(example, tmp_path,
                                                         monkeypatch):
  """The ``mapper:`` section gives the method and Timeloop's rules
  (Timeloop's defaults where it leaves them out); arguments override; no
  default time limit when a rule can end the search."""
  calls = []
  monkeypatch.setitem(SEARCHES, "random", lambda wl, **kw: calls.append(kw))
  monkeypatch.setitem(SEARCHES, "evolve", lambda wl, **kw: calls.append(kw))
  f = tmp_path / "mapper.yaml"
  f.write_text("mapper:\n  algorithm: random_pruned\n  victory-condition: 7\n"
               "  heartbeat: 9\n  search_size: 100\n"
               "  penalize_consecutive_bypass_fails: true\n")
  wl = api.load(*EXAMPLE_FILES, f)
  search(wl)
  assert calls[-1]["rules"] == StopRules(victory=7, timeout=9, search_size=100,
                                         penalize_bypass_fails=True)
  assert calls[-1]["time_limit"] is None
  search(wl, victory=0, search_size=0, timeout=0)
  assert calls[-1]["rules"] == StopRules(penalize_bypass_fails=True)
  assert calls[-1]["time_limit"] == DEFAULT_TIME_LIMIT
  f.write_text("mapper:\n  optimization_metrics: [energy]\n")
  wl = api.load(*EXAMPLE_FILES, f)
  search(wl)                      # Timeloop's defaults: hybrid, 500, 1000
  assert calls[-1]["rules"] == StopRules(victory=500, timeout=1000)
  assert calls[-1]["objective"] == ("energy",)
  search(example)                 # no mapper section: no rules
  assert calls[-1]["rules"] == StopRules()
  with pytest.raises(ValueError, match="victory"):
    search(example, "random", victory=-1)


@pytest.mark.parametrize("text,path,fragment", [
    ("algorithm: annealing", "mapper.algorithm", "Choose one of"),
    ("algorithm: linear-prunned", "mapper.algorithm", "linear_pruned"),
    ("victory_condition: -2", "mapper.victory_condition", "non-negative"),
    ("max_temporal_loops_in_a_mapping: -3",
     "mapper.max_temporal_loops_in_a_mapping", ">= -1"),
    ("diagnostics: 3", "mapper.diagnostics", "true or false")])
def test_bad_mapper_settings(tmp_path, text, path, fragment):
  f = tmp_path / "mapper.yaml"
  f.write_text(f"mapper:\n  {text}\n")
  with pytest.raises(SpecError) as info:
    api.load(*EXAMPLE_FILES, f)
  assert path in str(info.value) and fragment in str(info.value)


def test_max_temporal_loops_refuses_mappings(example, tmp_path):
  f = tmp_path / "mapper.yaml"
  f.write_text("mapper: {algorithm: random, max_temporal_loops_in_a_mapping: "
               "2, victory_condition: 0}\n")
  wl = api.load(*EXAMPLE_FILES, f)
  r = search(wl, budget=BATCH, batch=BATCH, progress=False, topk=50)
  plain = search(example, "random", budget=BATCH, batch=BATCH,
                 progress=False)
  assert r.legal < plain.legal
  for _, m, _ in r.topk:
    assert (np.asarray(m.temporal) > 1).sum() <= 2


def test_cli_writes_map_and_progress(tmp_path):
  out = tmp_path / "out"
  _, result = run_map(EXAMPLE_FILES, out, method="random", budget=2048,
                       seed=5)
  mapping, stats = result.best_mapping, result.best_stats
  assert bool(stats.valid)
  rows = list(csv.DictReader((out / "progress.csv").read_text().splitlines()))
  assert list(rows[0])[:4] == ["time_s", "evaluated", "legal",
                               "best_objective"]
  assert int(rows[-1]["evaluated"]) == 2048
  # map.yaml reads back to the same mapping and numbers.
  again = api.load(*EXAMPLE_FILES, out / "map.yaml")
  m = again.mapping()
  for f in ("temporal", "spatial_x", "spatial_y", "keep"):
    np.testing.assert_array_equal(getattr(m, f), getattr(mapping, f))
  s = again.evaluate(m)
  assert float(s.energy_total) == pytest.approx(float(stats.energy_total))
  assert float(s.cycles) == float(stats.cycles)
  assert float(rows[-1]["best_objective"]) == pytest.approx(float(stats.edp))


def test_cli_raises_when_nothing_legal(tmp_path):
  """A search that finds no legal mapping is a SpecError (progress.csv is
  still written)."""
  with pytest.raises(SpecError, match="no legal mapping"):
    run_map(EXAMPLE_FILES, tmp_path, method="random", budget=0)
  assert (tmp_path / "progress.csv").is_file()


def test_cli_defaults():
  parser = argparse.ArgumentParser()
  add_map_arguments(parser)
  a = parser.parse_args(["x.yaml", "-o", "out"])
  # --search None: the spec's mapper.algorithm, else auto.
  assert (a.files, a.output, a.seed, a.search, a.objective, a.budget,
          a.time_limit) == (["x.yaml"], "out", 0, None, None, None, None)


def test_map_command_honours_the_file_and_prints_a_summary(reference,
                                                            tmp_path, capsys):
  """``jaxloop map`` on tutorial 05 (linear_pruned, victory 0, timeout 0):
  the exhaustive search to the end, and the summary lines."""
  _, _, _, files = _tutorial_05(reference, "freebypass")
  assert main(["map", *map(str, files), "-o", str(tmp_path)]) == 0
  out = capsys.readouterr()
  assert "is not used" not in out.err          # num_threads: 1
  lines = out.out.splitlines()
  assert lines[0] == "search     : exhaustive, objective delay,energy"
  assert lines[1] == ("mapspace   : 64 mappings (1 factorizations x 1 loop "
                      "orders x 64 bypass choices)")
  assert lines[2].startswith("evaluated  : 64, 64 legal, in ")
  assert lines[3] == ("stopped    : exhausted: every mapping of the space "
                      "evaluated: the best is the optimum")
  assert lines[4].startswith("best       : energy 0.04648") and \
      "cycles 1536  EDP 7.1402e-05 J*cycle  utilization 100.00%" in lines[4]


def test_command_line_overrides_the_file(reference, tmp_path):
  """--search, --budget and --objective win over the file's algorithm and
  metrics (its victory/timeout 0 stay off)."""
  _, _, _, files = _tutorial_05(reference, "null")
  _, r = run_map(files, tmp_path, method="random", budget=300, seed=2,
                 objective="edp")
  assert (r.method, r.evaluated, r.stop_reason) == ("random", 300, "budget")
  assert r.objective == ("edp",) and r.rules == StopRules()
  _, r = run_map(files, tmp_path, method="evolve", budget=5000, victory=20)
  assert r.method == "evolve" and r.stop_reason == "victory"
  assert r.evaluated < 5000


def test_settings_not_used_are_named_once(tmp_path, capsys):
  f = tmp_path / "mapper.yaml"
  f.write_text("mapper:\n  algorithm: random_pruned\n  num_threads: 8\n"
               "  live_status: true\n  diagnostics: true\n"
               "  log_stats: false\n  max_permutations_per_if_visit: 4\n"
               "  sync_interval: 0\n  victory_condition: 0\n"
               "  timeout: 0\n  frobnicate: 3\n")
  assert main(["map", *EXAMPLE_FILES, str(f), "-o", str(tmp_path / "o"),
               "--budget", "64"]) == 0
  err = capsys.readouterr().err.splitlines()
  named = [l.split(" is not used: ")[0] for l in err if "is not used" in l]
  assert named == ["jaxloop map: mapper.num_threads",
                   "jaxloop map: mapper.live_status",
                   "jaxloop map: mapper.diagnostics",
                   "jaxloop map: mapper.max_permutations_per_if_visit",
                   "jaxloop map: mapper.frobnicate"]
  assert ("jaxloop map: mapper.num_threads is not used: jaxloop runs one "
          "search, batched") in err[0]


def test_device_random_same_seed_same_result(example):
  """The on-device random search (one metric, no row-by-row rule): same
  seed, same result; counts, log rows (one per chunk), a distinct sorted
  top-k and the exact figures of the best mapping."""
  a = search(example, "random", budget=3 * BATCH, seed=7, batch=BATCH,
             progress=False, device=True)
  b = search(example, "random", budget=3 * BATCH, seed=7, batch=BATCH,
             progress=False)                        # the default path
  _same(a, b)
  assert (a.evaluated, a.stop_reason, len(a.log)) == (3 * BATCH, "budget", 3)
  assert [r["evaluated"] for r in a.log] == [BATCH, 2 * BATCH, 3 * BATCH]
  assert 0 < a.legal <= a.evaluated and a.log[-1]["legal"] == a.legal
  keys = [k for k, _, _ in a.topk]
  assert len(keys) == 10 and keys == sorted(keys)
  ms = example.mapspace
  hashes = {int(ms.canonical_hash(ms.encode(m))[0]) for _, m, _ in a.topk}
  assert len(hashes) == 10
  s = a.best_stats
  assert bool(s.valid)
  assert a.best_objective == tuple(objective_keys(
      jax_tree_expand(s), ("edp",))[0].tolist())
  assert a.log[-1]["best_objective"] == a.best_objective[0]
  assert a.log[-1]["best_cycles"] == float(s.cycles)
  c = search(example, "random", budget=3 * BATCH, seed=8, batch=BATCH,
             progress=False)
  assert c.best_objective != a.best_objective


def jax_tree_expand(stats):
  import jax
  return jax.tree.map(lambda x: np.asarray(x)[None], stats)


def test_random_search_paths(example):
  """The host loop on request or where the device loop does not apply
  (a lexicographic objective, a row-by-row rule); device=True refuses
  those."""
  h = search(example, "random", budget=BATCH, seed=7, batch=BATCH,
             progress=False, device=False)
  assert h.evaluated == BATCH and h.best_stats.valid
  lex = search(example, "random", budget=BATCH, seed=7, batch=BATCH,
               progress=False, objective="delay,energy")
  assert len(lex.best_objective) == 2
  with pytest.raises(ValueError, match="on-device"):
    search(example, "random", budget=BATCH, batch=BATCH, progress=False,
           device=True, victory=10)


@pytest.mark.parametrize("method", ["random", "evolve"])
def test_time_limit_counts_the_start_up(tmp_path, method):
  """``run_map``'s time limit runs from the command's start: a start-up
  already longer than the limit leaves the search one batch, reported
  as stopped by the time limit, with the start-up in the summary."""
  import time
  started = time.perf_counter() - 1000.0        # a fake clock: 1000 s ago
  _, r = run_map(EXAMPLE_FILES, tmp_path, method=method, time_limit=60.0,
                 seed=1, started=started)
  assert r.stop_reason == "time" and r.time_limit == 60.0
  assert r.startup >= 1000.0
  # One batch (host loop) or one call's generations (device evolve).
  assert (len(r.log) <= 3 or r.evaluated <= 3 * 65536)
  assert r.evaluated > 0 and r.best_stats.valid
  assert "s start-up before the search" in r.summary_lines()[2]
  # Without a time limit the start-up changes nothing (a budget ends it).
  _, r = run_map(EXAMPLE_FILES, tmp_path, method=method, budget=BATCH,
                 seed=1, started=started)
  assert r.stop_reason == "budget" and r.evaluated == BATCH
