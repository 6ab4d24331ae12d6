"""Cycles when bandwidth limits bind, against Timeloop (tests/data/throttle).

The cases (made by ``experiments/make_throttle_cases.py`` with Timeloop
0fc43fb, see ``tests/data/throttle/README.md``) set read, write and shared
bandwidths low enough to bind at DRAM, global buffers and PE buffers.  Per
level and total cycles must be Timeloop's to the cycle, utilization and
energies (leakage grows with the cycles) and every count as
:func:`jaxloop.validate.compare` requires.
"""
import dataclasses
import json
from pathlib import Path

import jax
import numpy as np
import pytest

from jaxloop import api
from jaxloop.model import access
from jaxloop.model.evaluate import evaluate_batch, evaluate_last
from jaxloop.report import stats_dict
from jaxloop.validate import case_files, compare

DATA = Path(__file__).resolve().parent / "data" / "throttle"


def _cases():
  index = DATA / "cases.json"
  return json.loads(index.read_text()) if index.is_file() else []


CASES = _cases()


@pytest.fixture
def data():
  if not CASES:
    pytest.skip(f"throttled Timeloop cases not found at {DATA} (make them "
                "with experiments/make_throttle_cases.py)")
  return DATA


def _relaxed(m):
  """``m`` with real factors and keep weights (the relaxed model's input;
  the same numbers at these integer points)."""
  f = lambda x: np.asarray(x, np.float64)
  return dataclasses.replace(m, temporal=f(m.temporal),
                             spatial_x=f(m.spatial_x),
                             spatial_y=f(m.spatial_y), keep=f(m.keep))


def _expected(case):
  return json.loads((DATA / case["dir"] / case["expected"]).read_text())


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_throttled_case(case, data):
  wl = api.load(*case_files(data, case))
  stats = wl.evaluate()
  got = stats_dict(wl.structure, stats)
  expected = _expected(case)
  bad = compare(got, expected)
  assert not bad, "\n".join(bad)
  # cycles per level (compare checks them too) and the bandwidth binds
  by_name = {lv["name"]: lv for lv in got["levels"]}
  for lv in expected["levels"]:
    assert by_name[lv["name"]]["cycles"] == lv["cycles"], lv["name"]
  want = expected["summary"]
  assert got["summary"]["cycles"] == want["cycles"]
  assert want["cycles"] > expected["levels"][0]["cycles"], "limit must bind"
  # utilization = computes / (compute instances * cycles), as Timeloop
  util = want["computes"] / (wl.structure.compute_instances * want["cycles"])
  assert float(stats.utilization) == pytest.approx(util, rel=1e-15)
  assert round(util * 100, 2) == pytest.approx(want["utilization_pct"],
                                               abs=1e-9)


def test_cases_bind_read_write_and_shared(data):
  """The set has binding read, write and shared limits, at DRAM and at
  on-chip buffers, on at least three architectures."""
  kinds, places, sources = set(), set(), set()
  for case in CASES:
    sources.add(case["source"].split(":")[1])
    expected = _expected(case)
    slowed = {lv["name"] for lv in expected["levels"][1:]
              if lv["cycles"] > expected["levels"][0]["cycles"]}
    for level, attrs in case["limits"].items():
      if level in slowed:
        places.add("DRAM" if level in ("DRAM", "MainMemory") else "buffer")
        kinds.update(k.split("_")[0] for k in attrs)
  assert len(CASES) >= 6 and len(sources) >= 3
  assert {"read", "write", "shared"} <= kinds
  assert places == {"DRAM", "buffer"}


# Cases where Timeloop's rounding differs from ceil(words / bandwidth) run
# by default; the others only with the slow tests (two compilations each).
QUICK = ("eyeriss_dram_read", "os_glb_read_dram_write")


@pytest.mark.parametrize("case", [
    c if c["name"] in QUICK else pytest.param(c, marks=pytest.mark.slow)
    for c in CASES], ids=[c["name"] for c in CASES])
def test_batched_and_relaxed_equal_single(case, data):
  """The batched, batch-last (relaxed float factors) and single paths give
  the same cycles."""
  wl = api.load(*case_files(data, case))
  m = wl.mapping()
  single = wl.evaluate()
  batch = jax.tree.map(lambda x: np.stack([x] * 3), m)
  many = jax.jit(evaluate_batch, static_argnums=0)(
      wl.structure, wl.params, batch)
  np.testing.assert_array_equal(np.asarray(many.cycles),
                                [single.cycles] * 3)
  np.testing.assert_array_equal(np.asarray(many.level_cycles),
                                [single.level_cycles] * 3)
  relaxed = _relaxed(access.batch_last(m))
  soft = jax.jit(evaluate_last, static_argnums=0)(
      wl.structure, wl.params, relaxed)
  np.testing.assert_array_equal(np.asarray(soft.level_cycles)[..., 0],
                                single.level_cycles)
  assert float(soft.cycles[0]) == float(single.cycles)


@pytest.mark.slow
def test_relaxed_cycles_have_gradients(data):
  """Straight-through ceils: the throttled cycles of the relaxed model
  have a finite, nonzero gradient with respect to the factors."""
  case = next(c for c in CASES if c["name"] == "conv1d_3level_mixed")
  wl = api.load(*case_files(data, case))
  m = access.batch_last(wl.mapping())

  def cycles(temporal):
    r = dataclasses.replace(_relaxed(m), temporal=temporal)
    return evaluate_last(wl.structure, wl.params, r).cycles[0]

  g = jax.grad(cycles)(m.temporal.astype(np.float64))
  assert np.all(np.isfinite(g)) and np.any(g != 0)
