"""Tests for jaxloop.mapper: reproducibility, objectives, method choice and
options, exhaustive optimum, the ``map`` CLI hook."""
from __future__ import annotations

import argparse
import csv
import importlib

import numpy as np
import pytest

from jaxloop import api
from jaxloop.errors import SpecError
from jaxloop.mapper import (AUTO_EXHAUSTIVE_LIMIT, DEFAULT_TIME_LIMIT,
                            SEARCHES, parse_objective, resolve_method, search)
from jaxloop.mapper.cli import add_map_arguments, run_map
from jaxloop.validate import case_files

from support import reference_cases

# The package module (``jaxloop.mapper`` may name the function).
search_pkg = importlib.import_module("jaxloop.mapper")
EXAMPLE_FILES = [f for f in api.example_files()
                 if not f.endswith("map.yaml")]       # arch, problem, ERT
BATCH = 256


@pytest.fixture(scope="module")
def example():
  return api.load(*EXAMPLE_FILES)


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
  assert set(SEARCHES) == {"random", "exhaustive", "evolve", "gradient",
                           "hybrid"}
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
  unmapped = api.load(d / case["input"], d / case["ert"], d / case["art"])
  reference_stats = api.load(*case_files(reference, case)).evaluate()
  return case, unmapped, reference_stats


@pytest.mark.parametrize("variant,size", [("baked", 1), ("freebypass", 64),
                                          ("null", 13063680)])
def test_exhaustive_tutorial_05(reference, variant, size):
  case, wl, ref = _tutorial_05(reference, variant)
  r = search(wl, "exhaustive", batch=4096, progress=False)
  # No objective given: the spec's optimization_metrics.
  assert r.objective == parse_objective(wl.spec.mapper.optimization_metrics)
  assert r.complete and r.stop_reason == "exhausted"
  assert r.mapspace_size["total"] == size
  ref_e, ref_c = float(ref.energy_total), float(ref.cycles)
  e, c = float(r.best_stats.energy_total), float(r.best_stats.cycles)
  assert (c, e) <= (ref_c, ref_e * (1 + 1e-12))
  assert e * c <= ref_e * ref_c * (1 + 1e-12)
  assert float(r.best_stats.edp) <= case["summary"]["edp"] * 1.005


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
  assert (a.files, a.output, a.seed, a.search, a.objective, a.budget,
          a.time_limit) == (["x.yaml"], "out", 0, "auto", None, None, None)
