"""Tests for jaxloop.search: reproducibility, objectives, exhaustive optimum,
the ``map`` CLI hook."""
from __future__ import annotations

import argparse
import csv
import dataclasses
from pathlib import Path

import jax
import numpy as np
import pytest

from jaxloop.errors import SpecError
from jaxloop.mapping import mapping_from_directives, stack
from jaxloop.model.evaluate import make_evaluator
from jaxloop.search import (evolve_search, exhaustive_search, parse_objective,
                            random_search)
from jaxloop.search.cli import add_map_arguments, run_map
from jaxloop.spec import load_spec
from jaxloop.structure import build_params, build_structure

EXAMPLE = Path(__file__).resolve().parents[1] / "specs" / "example"
BATCH = 256


def _example():
  return load_spec(EXAMPLE / "arch.yaml", EXAMPLE / "problem.yaml",
                   EXAMPLE / "ERT.yaml")


def _same(a, b):
  assert a.best_objective == b.best_objective
  for f in ("temporal", "spatial_x", "spatial_y", "order", "keep"):
    np.testing.assert_array_equal(getattr(a.best_mapping, f),
                                  getattr(b.best_mapping, f))
  assert [r["best_objective"] for r in a.log] == [
      r["best_objective"] for r in b.log]


@pytest.mark.parametrize("search", [random_search, evolve_search])
def test_same_seed_same_result(search):
  spec = _example()
  a = search(spec, budget=3 * BATCH, seed=3, batch=BATCH, progress=False)
  b = search(spec, budget=3 * BATCH, seed=3, batch=BATCH, progress=False)
  _same(a, b)
  assert a.evaluated == 3 * BATCH and a.legal > 0
  assert a.best_stats.valid
  assert len(a.topk) == 10
  keys = [k for k, _, _ in a.topk]
  assert keys == sorted(keys)
  assert len(a.log) == 3
  assert a.log[-1]["evaluated"] == 3 * BATCH


def test_objectives():
  assert parse_objective("edp") == ("edp",)
  assert parse_objective("delay, energy") == ("delay", "energy")
  assert parse_objective(["cycles", "energy"]) == ("delay", "energy")
  with pytest.raises(SpecError):
    parse_objective("area")
  spec = _example()
  for obj in ("energy", "delay", ["delay", "energy"]):
    r = random_search(spec, budget=BATCH, seed=0, batch=BATCH,
                      objective=obj, progress=False)
    s = r.best_stats
    first = {"energy": s.energy_total, "delay": s.cycles}[
        obj if isinstance(obj, str) else obj[0]]
    assert r.best_objective[0] == pytest.approx(float(first))
    assert len(r.best_objective) == (1 if isinstance(obj, str) else 2)


def test_evolve_uses_mutations_and_stays_legal():
  spec = _example()
  r = evolve_search(spec, budget=6 * BATCH, seed=1, batch=BATCH,
                    progress=False)
  rnd = random_search(spec, budget=6 * BATCH, seed=1, batch=BATCH,
                      progress=False)
  assert r.best_stats.valid
  # Not a guarantee in general, but holds comfortably on this spec.
  assert r.best_objective[0] <= rnd.best_objective[0]


def _reference_exact(d, case):
  spec = load_spec(d / case["input"], d / case["mapping"], ert=d / case["ert"],
                   art=d / case["art"])
  st = build_structure(spec)
  m = mapping_from_directives(st, spec.mapping)
  s = jax.tree.map(np.asarray, make_evaluator(st)(build_params(spec, st),
                                                 stack([m])))
  return float(s.energy_total[0]), float(s.cycles[0])


@pytest.mark.parametrize("variant,size", [("baked", 1), ("freebypass", 64),
                                          ("null", 13063680)])
def test_exhaustive_tutorial_05(reference, variant, size):
  cases = {c["name"]: c for c in __import__("conftest").reference_cases()}
  case = cases[f"tutorial:05-mapper-conv1d+oc-3level:{variant}"]
  d = reference / case["dir"]
  spec = load_spec(d / case["input"], ert=d / case["ert"], art=d / case["art"])
  r = exhaustive_search(spec, objective=spec.mapper.optimization_metrics,
                        batch=4096, progress=False)
  assert r.complete and r.stop_reason == "exhausted"
  assert r.mapspace_size["total"] == size
  ref_e, ref_c = _reference_exact(d, case)
  e, c = float(r.best_stats.energy_total), float(r.best_stats.cycles)
  assert (c, e) <= (ref_c, ref_e * (1 + 1e-12))
  assert e * c <= ref_e * ref_c * (1 + 1e-12)
  summary = case["summary"]["edp"]
  assert e * 1e-12 * c <= summary * 1.005


def _args(tmp_path, **kw):
  parser = argparse.ArgumentParser()
  add_map_arguments(parser)
  files = [str(EXAMPLE / f) for f in ("arch.yaml", "problem.yaml",
                                      "ERT.yaml")]
  argv = files + ["-o", str(tmp_path / "out")]
  for k, v in kw.items():
    argv += [f"--{k.replace('_', '-')}", str(v)]
  return parser.parse_args(argv)


def test_cli_writes_map_and_progress(tmp_path):
  args = _args(tmp_path, budget=2048, search="random", seed=5)
  assert args.seed == 5 and args.search == "random" and args.time_limit is None
  structure, params, mapping, stats = run_map(args)
  assert bool(stats.valid)
  out = tmp_path / "out"
  rows = list(csv.DictReader((out / "progress.csv").read_text().splitlines()))
  assert list(rows[0])[:4] == ["time_s", "evaluated", "legal",
                               "best_objective"]
  assert int(rows[-1]["evaluated"]) == 2048
  # map.yaml reads back to the same mapping and numbers.
  spec = load_spec(EXAMPLE / "arch.yaml", EXAMPLE / "problem.yaml",
                   EXAMPLE / "ERT.yaml", out / "map.yaml")
  m = mapping_from_directives(structure, spec.mapping)
  for f in ("temporal", "spatial_x", "spatial_y", "keep"):
    np.testing.assert_array_equal(getattr(m, f), getattr(mapping, f))
  s = jax.tree.map(np.asarray, make_evaluator(structure)(params, stack([m])))
  assert float(s.energy_total[0]) == pytest.approx(float(stats.energy_total))
  assert float(s.cycles[0]) == float(stats.cycles)
  assert float(rows[-1]["best_objective"]) == pytest.approx(
      float(stats.energy_total) * 1e-12 * float(stats.cycles))


def test_cli_defaults():
  parser = argparse.ArgumentParser()
  add_map_arguments(parser)
  a = parser.parse_args(["x.yaml", "-o", "out"])
  assert (a.files, a.output, a.seed, a.search, a.objective, a.budget,
          a.time_limit) == (["x.yaml"], "out", 0, "auto", None, None, None)
