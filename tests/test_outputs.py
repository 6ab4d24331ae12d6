"""Timeloop-format outputs: stats.txt and map.txt against Timeloop's own,
and the written inputs (map.yaml, parsed-processed-input.yaml, ERT/ART)
read back by jaxloop to the same numbers.

Timeloop itself is not run here.  By hand (a build of NVlabs/timeloop
0fc43fb), ``timeloop-model parsed-processed-input.yaml ERT.yaml ART.yaml
map.yaml`` on what ``Workload.write`` writes gives a stats.txt identical
to jaxloop's but for the summary's ``Area`` line (see ALLOWED) and the
same map.txt, for: the 20 reference cases, the 11 throttled cases of
tests/data/throttle, the v0.4 user specs of the four example designs and
tutorials 00-04, the bundled example with and without its ERT/ART, and
``jaxloop map`` results (tutorial 05, eyeriss, simba, eyeriss on an
AlexNet layer, the bundled example).  ``timeloop-mapper`` on the written
inputs of the mapper cases runs: on tutorial 05 (linear_pruned) it writes
the reference's stats.txt and map.yaml exactly, and the best mappings of
its random searches (eyeriss, simba, tutorials 06, 08) evaluated by
jaxloop give Timeloop's stats.txt and map.txt.
"""
import json
import re
from pathlib import Path

import jax
import numpy as np
import pytest

from jaxloop import api, outputs
from jaxloop.mapping import directives_from_mapping, mapping_from_directives
from jaxloop.report import partition_sizes, stats_text
from jaxloop.spec import load_spec
from jaxloop.validate import case_files

from support import REFERENCE, reference_cases

CASES = reference_cases()
IDS = [c["name"] for c in CASES]

# Labels of Timeloop's stats.txt whose numbers jaxloop does not print as
# Timeloop does: (section, label) -> reason.  Every other line must match.
ALLOWED = {
    ("Summary Stats", "Area"):
        "Timeloop 0fc43fb prints 0.00 mm^2 whatever the ART says (the "
        "evaluation resets the area topology.cpp computed from the specs); "
        "jaxloop prints the ART's total, the sum of the levels' Area lines",
}

_NUMBER = re.compile(r"^-?\d+(\.\d+)?(e[-+]\d+)?$")


def parse_stats(text: str) -> dict:
  """``{(section, level, data space, label): value}`` for every ``label :
  value`` line of a stats.txt (levels by name, '' outside a level)."""
  out = {}
  section, level, ds = "", "", ""
  lines = text.splitlines()
  for k, line in enumerate(lines):
    nxt = lines[k + 1] if k + 1 < len(lines) else ""
    if nxt and set(nxt) == {"-"} and not line.startswith(" "):
      section, level, ds = line, "", ""
      continue
    m = re.match(r"^=== (.+) ===$", line)
    if m:
      level, ds = m.group(1), ""
      continue
    m = re.match(r"^    (\w+):$", line)
    if m:
      ds = m.group(1)
      continue
    if re.match(r"^ {6,}for ", line):       # a level's MAPPING loop nest
      key = (section, level, "", "Loop nest")
      out[key] = out.get(key, "") + line + "\n"
      continue
    for sep in (" : ", ": ", " = ", "= "):
      if sep in line:
        label, value = line.split(sep, 1)
        key = (section, level, ds, label.strip())
        assert key not in out, f"duplicate line {key}"
        out[key] = value.strip()
        break
  return out


def _number(value: str):
  """The number in a value (units and % dropped), or None."""
  head = value.split()[0].rstrip("%") if value else ""
  return float(head) if _NUMBER.match(head) else None


def _same(got: str, want: str) -> bool:
  """Counts exactly; printed decimals to the print precision or 0.1 %."""
  a, b = _number(got), _number(want)
  if a is None or b is None or " (" in want:
    return got == want
  head = want.split()[0].rstrip("%")
  if "." not in head and "e" not in head:
    return a == b
  if "e" in head:                       # EDP: 3 significant digits
    ulp = 10.0 ** (int(head.split("e")[1]) - 2)
  else:
    ulp = 10.0 ** -len(head.split(".")[1])
  return abs(a - b) <= max(ulp, 1e-3 * abs(b)) and \
      got.split()[1:] == want.split()[1:]


_LOADED: dict = {}


@pytest.fixture
def evaluated(reference):
  """Each case's workload, files' mapping and stats (loaded once per
  session)."""
  def get(case):
    if case["name"] not in _LOADED:
      wl = api.load(*case_files(reference, case))
      _LOADED[case["name"]] = (wl, wl.mapping(), wl.evaluate())
    return _LOADED[case["name"]]
  return get


def assert_stats_match(got_text: str, want_text: str) -> None:
  """Every line of Timeloop's stats.txt is in jaxloop's, at the same level
  and data space, with the same value (ALLOWED apart), and jaxloop prints
  no line Timeloop does not."""
  got, want = parse_stats(got_text), parse_stats(want_text)
  assert len(want) > 100
  missing = sorted(set(want) - set(got))
  extra = sorted(set(got) - set(want))
  assert not missing, f"lines Timeloop prints, jaxloop not: {missing[:5]}"
  assert not extra, f"lines jaxloop prints, Timeloop not: {extra[:5]}"
  bad = [f"{k}: jaxloop {got[k]!r}, Timeloop {want[k]!r}" for k in want
         if (k[0], k[3]) not in ALLOWED and not _same(got[k], want[k])]
  assert not bad, "\n".join(bad[:10])


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_stats_txt_matches_timeloop(case, reference, evaluated, tmp_path):
  """The reference cases' stats.txt, line by line."""
  wl, m, stats = evaluated(case)
  wl.write(stats, tmp_path)
  assert_stats_match((tmp_path / "stats.txt").read_text(),
                     (reference / case["dir"] / case["stats"]).read_text())


THROTTLE = Path(__file__).resolve().parent / "data" / "throttle"
THROTTLE_CASES = json.loads((THROTTLE / "cases.json").read_text()) \
    if (THROTTLE / "cases.json").is_file() else []


@pytest.mark.parametrize("case", THROTTLE_CASES,
                         ids=[c["name"] for c in THROTTLE_CASES])
def test_stats_txt_matches_timeloop_throttled(case):
  """Timeloop's stats.txt where bandwidth limits bind (tests/data/throttle):
  bandwidth throttling, level cycles and throttled bandwidths."""
  wl = api.load(*case_files(THROTTLE, case))
  stats = wl.evaluate()
  text = stats_text(wl.structure, stats, spec=wl.spec, params=wl.params,
                    mapping=wl.mapping(),
                    spatial_order=outputs.spatial_orders(wl.spec,
                                                         wl.structure))
  want = (THROTTLE / case["dir"] / case["stats"]).read_text()
  assert_stats_match(text, want)
  assert any(not line.endswith(": 1.00") for line in want.splitlines()
             if "Bandwidth throttling" in line)


def test_allow_list_is_needed(reference, evaluated):
  """Each allowed label differs somewhere (else drop it from ALLOWED)."""
  case = CASES[0]
  wl, m, stats = evaluated(case)
  got = parse_stats(stats_text(wl.structure, stats, spec=wl.spec,
                               params=wl.params, mapping=m))
  want = parse_stats((reference / case["dir"] / case["stats"]).read_text())
  for section, label in ALLOWED:
    keys = [k for k in want if (k[0], k[3]) == (section, label)]
    assert keys and any(not _same(got[k], want[k]) for k in keys)


@pytest.mark.parametrize("case", [c for c in CASES if (
    REFERENCE / c["dir"] / c["stats"].replace("stats.txt", "map.txt"))
    .is_file()], ids=lambda c: c["name"])
def test_map_txt_matches_timeloop(case, reference, evaluated):
  """map.txt byte for byte as Timeloop wrote it."""
  wl, m, stats = evaluated(case)
  want = (reference / case["dir"] / case["stats"].replace(
      "stats.txt", "map.txt")).read_text()
  got = outputs.map_text(wl.structure, stats, m,
                         outputs.spatial_orders(wl.spec, wl.structure))
  assert got == want


def _reread(outdir):
  return api.load(outdir / outputs.PROCESSED_INPUT, outdir / "ERT.yaml",
                  outdir / "ART.yaml", outdir / "map.yaml")


def _assert_same(a, b):
  for field in vars(a):
    np.testing.assert_array_equal(np.asarray(getattr(a, field)),
                                  np.asarray(getattr(b, field)),
                                  err_msg=field)


REREAD = ["tutorial:04-model-conv1d+oc-3levelspatial:cp",
          "example_designs:simba_like", "example_designs:eyeriss_like",
          "tutorial:05-mapper-conv1d+oc-3level:freebypass"]


@pytest.mark.parametrize("case", [c for c in CASES if c["name"] in REREAD],
                         ids=lambda c: c["name"])
def test_written_inputs_read_back(case, evaluated, tmp_path):
  """load(parsed-processed-input, ERT, ART, map.yaml) gives the same
  structure, parameters, mapping and stats; written again, the same
  outputs."""
  wl, m, stats = evaluated(case)
  wl.write(stats, tmp_path / "a")
  back = _reread(tmp_path / "a")
  assert back.structure == wl.structure
  _assert_same(back.params, wl.params)
  _assert_same(back.mapping(), m)
  _assert_same(back.evaluate(), stats)
  back.write(back.evaluate(), tmp_path / "b")
  for name in ("stats.txt", "map.txt", "map.yaml", "ERT.yaml", "ART.yaml"):
    assert (tmp_path / "a" / name).read_text() == \
        (tmp_path / "b" / name).read_text(), name
  # (attributes a subtree passes down are listed per level the second time)
  assert _reread(tmp_path / "b").structure == wl.structure


@pytest.mark.slow
@pytest.mark.parametrize("case", [c for c in CASES if c["name"] not in REREAD],
                         ids=lambda c: c["name"])
def test_written_inputs_read_back_all(case, evaluated, tmp_path):
  wl, m, stats = evaluated(case)
  wl.write(stats, tmp_path)
  back = _reread(tmp_path)
  assert back.structure == wl.structure
  _assert_same(back.evaluate(), stats)


def test_v04_spec_flattens_and_reads_back(reference, tmp_path):
  """A v0.4 user spec (!Container/!Component, includes) is written in the
  flattened form and reads back to the same numbers; its constraints are
  kept (as mapspace_constraints) for timeloop-mapper."""
  base = reference / "example_designs"
  case = next(c for c in CASES if c["name"] == "example_designs:simba_like")
  d = reference / case["dir"]
  wl = api.load(base / "simba_like" / "arch.yaml",
                base / "_include" / "default_problem.yaml",
                base / "_include" / "mapper.yaml", d / case["mapping"],
                d / case["ert"], d / case["art"])
  stats = wl.evaluate()
  wl.write(stats, tmp_path)
  back = _reread(tmp_path)
  assert back.structure == wl.structure
  _assert_same(back.evaluate(), stats)
  assert len(back.spec.constraints) == len(wl.spec.constraints)
  doc = load_spec(tmp_path / outputs.PROCESSED_INPUT)
  assert doc.mapper.optimization_metrics == wl.spec.mapper.optimization_metrics
  flat = (d / "timeloop-mapper.map.txt").read_text()
  assert (tmp_path / "map.txt").read_text() == flat


def test_built_in_tables_written_and_read_back(tmp_path):
  """Without Accelergy tables the built-in estimates are written as
  ERT.yaml/ART.yaml; reading them back gives the same numbers."""
  files = [f for f in api.example_files()
           if not f.endswith(("ERT.yaml", "ART.yaml"))]
  wl = api.load(*files)
  assert wl.spec.ert is None
  stats = wl.evaluate()
  wl.write(stats, tmp_path, "title line")
  assert (tmp_path / "stats.txt").read_text().startswith("title line\n\n")
  back = _reread(tmp_path)
  assert back.spec.ert is not None
  _assert_same(back.params, wl.params)
  _assert_same(back.evaluate(), stats)


def test_mapper_result_written_in_dim_order(tmp_path):
  """A mapping other than the files' (a search result) is written with
  jaxloop's spatial order (X dims in dim order, then Y) and reads back."""
  wl = api.load(*api.example_files())
  m = wl.mapping()
  perm = np.asarray(m.order).copy()
  perm[-1] = perm[-1][::-1]
  other = jax.tree.map(np.asarray, m)
  other = type(m)(temporal=other.temporal, spatial_x=other.spatial_x,
                  spatial_y=other.spatial_y, order=perm, keep=other.keep)
  stats = wl.evaluate(other)
  wl.write(stats, tmp_path, mapping=other)
  back = _reread(tmp_path)
  _assert_same(back.mapping(), other)
  _assert_same(back.evaluate(), stats)
  nest = (tmp_path / "map.txt").read_text().splitlines()
  top = wl.structure.level_names[-1]
  assert nest[0].startswith(top + " [ ")


def test_spatial_order_kept_in_map_yaml(reference, evaluated):
  """The files' spatial permutation survives in map.yaml (simba's
  inter_PE_spatial: M inside C along X)."""
  case = next(c for c in CASES if c["name"] == "example_designs:simba_like")
  wl, m, _ = evaluated(case)
  order = outputs.spatial_orders(wl.spec, wl.structure)
  lvl = wl.structure.level_names.index("inter_PE_spatial")
  dirs = directives_from_mapping(wl.structure, m, order)
  sp = next(d for d in dirs if d["target"] == "inter_PE_spatial"
            and d["type"] == "spatial")
  assert sp["permutation"].startswith("MC") and sp["split"] == 2
  default = next(d for d in directives_from_mapping(wl.structure, m)
                 if d["target"] == "inter_PE_spatial" and d["type"] == "spatial")
  assert default["permutation"].startswith("CM")
  loops = outputs.level_loops(wl.structure, m, lvl, order)
  assert [(wl.structure.dim_names[x.dim], x.kind) for x in loops] == \
      [("M", "X"), ("C", "X")]


def test_partition_sizes_match_timeloop(reference, evaluated):
  """Partition sizes of every level (kept or not) as Timeloop prints them
  for the kept ones (spatial fan-out and sliding windows: eyeriss)."""
  case = next(c for c in CASES if c["name"] == "example_designs:eyeriss_like")
  wl, m, stats = evaluated(case)
  part = partition_sizes(wl.structure, m)
  want = parse_stats((reference / case["dir"] / case["stats"]).read_text())
  seen = 0
  for (section, level, ds, label), v in want.items():
    if label == "Partition size":
      i = wl.structure.level_names.index(level)
      assert part[i, wl.structure.dataspace_names.index(ds)] == int(v)
      seen += 1
  assert seen >= 6


def test_invalid_mapping_is_marked(tmp_path):
  """A mapping Timeloop would reject says so in the summary."""
  wl = api.load(*api.example_files())
  m = jax.tree.map(np.asarray, wl.mapping())
  t = np.ones_like(m.temporal)
  t[0] = m.temporal.prod(axis=0)                # everything innermost
  bad = type(m)(temporal=t, spatial_x=m.spatial_x, spatial_y=m.spatial_y,
                order=m.order, keep=m.keep)
  stats = wl.evaluate(bad)
  assert not bool(stats.valid)
  text = stats_text(wl.structure, stats, spec=wl.spec, params=wl.params,
                    mapping=bad)
  assert "Valid: False (capacity False" in text


def test_write_without_any_mapping_is_an_error(tmp_path):
  files = [f for f in api.example_files() if not f.endswith("map.yaml")]
  wl = api.load(*files)
  with pytest.raises(Exception, match="no mapping"):
    wl.write(None, tmp_path)


def test_directives_from_mapping_round_trip_with_order():
  """Directives written with a spatial order read back to the arrays."""
  wl = api.load(*api.example_files())
  m = jax.tree.map(np.asarray, wl.mapping())
  order = [tuple(reversed(range(wl.structure.num_dims)))] * \
      wl.structure.num_levels
  spec = load_spec(*[f for f in api.example_files()
                     if not f.endswith("map.yaml")])
  from jaxloop.spec.mapping import Context, parse_directives
  ctx = Context.of(spec.problem, spec.arch)
  dirs = parse_directives(directives_from_mapping(wl.structure, m, order),
                          ctx, path="mapping", constraint=False)
  back = mapping_from_directives(wl.structure, dirs)
  _assert_same(back, m)
  json.dumps(directives_from_mapping(wl.structure, m, order))
