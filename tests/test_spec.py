"""Tests for the spec readers (jaxloop.spec) against Timeloop's references."""
from __future__ import annotations

import json
import os
import re
import warnings
from pathlib import Path

import pytest

from jaxloop.errors import SpecError
from jaxloop.spec import load_spec, load_yaml_files
from jaxloop.spec.mapping import parse_factors, parse_permutation

REF = Path(os.environ.get(
    "JAXLOOP_REFERENCE",
    Path(__file__).resolve().parents[1].parent / "shared" /
    "timeloop-reference"))

needs_ref = pytest.mark.skipif(
    not (REF / "cases.json").exists(),
    reason=f"Timeloop reference cases not found at {REF} "
    "(set JAXLOOP_REFERENCE to the timeloop-reference folder)")


def _cases():
  if not (REF / "cases.json").exists():
    return []
  return json.loads((REF / "cases.json").read_text())


def _load_case(case):
  d = REF / case["dir"]
  paths = [d / case["input"]]
  if case["mapping"] != case["input"]:
    paths.append(d / case["mapping"])
  return load_spec(*paths, ert=d / case["ert"], art=d / case["art"])


def _stats_specs(path: Path) -> dict:
  """Per printed level index: name and SPECS fields from a stats.txt."""
  levels: dict = {}
  current = None
  in_specs = False
  for line in path.read_text().splitlines():
    m = re.match(r"^Level (\d+)$", line)
    if m:
      current = {"index": int(m.group(1))}
      levels[current["index"]] = current
      in_specs = False
      continue
    if current is None:
      continue
    m = re.match(r"^=== (.+) ===$", line)
    if m and "name" not in current:
      current["name"] = m.group(1)
      continue
    if line.strip() == "SPECS":
      in_specs = True
      continue
    if line.strip() in ("MAPPING", "STATS"):
      in_specs = False
      if line.strip() == "STATS":
        current = None
      continue
    if in_specs and ":" in line:
      key, value = (s.strip() for s in line.split(":", 1))
      current[key] = value
  return levels


def _num(text: str):
  return None if text == "-" else float(text)


@needs_ref
@pytest.mark.parametrize("case", _cases(), ids=lambda c: c["name"])
def test_case_loads_and_matches_stats_specs(case):
  with warnings.catch_warnings():
    warnings.simplefilter("error")
    spec = _load_case(case)
  assert spec.ert is not None and spec.art is not None
  assert spec.problem.num_ops > 0
  if case["kind"] == "model" or case["mapping"] != case["input"]:
    assert spec.mapping, "the mapping to evaluate should not be empty"
  levels = _stats_specs(REF / case["dir"] / case["stats"])
  arith = levels.pop(0)
  a = spec.arch.arithmetic
  assert arith["name"] == a.name
  assert int(arith["Word bits"]) == a.word_bits
  assert arith["Instances"] == f"{a.instances} ({a.mesh_x}*{a.mesh_y})"
  assert levels, "no storage levels parsed from stats"
  for index, lv in levels.items():
    s = spec.arch.storage[index - 1]
    assert lv["name"] == s.name, index
    assert lv["Instances"] == f"{s.instances} ({s.mesh_x}*{s.mesh_y})"
    assert int(lv["Word bits"]) == s.word_bits, s.name
    assert int(lv["Block size"]) == s.block_size, s.name
    assert int(lv["Cluster size"]) == s.cluster_size, s.name
    size = None if lv["Size"] == "-" else int(lv["Size"])
    assert size == s.size, s.name
    assert _num(lv["Read bandwidth"]) == s.read_bandwidth, s.name
    assert _num(lv["Write bandwidth"]) == s.write_bandwidth, s.name
    assert _num(lv["Shared bandwidth"]) == s.shared_bandwidth, s.name
    assert float(lv["Multiple buffering"]) == s.multiple_buffering
  # Every non-dummy level and the arithmetic level have energy entries.
  for s in spec.arch.storage:
    if not s.is_dummy:
      assert spec.ert.lookup(s.ert_name), s.ert_name
    assert spec.art.lookup(s.ert_name) is not None, s.ert_name
  assert spec.ert.lookup(a.ert_name)


@needs_ref
def test_ert_names_match_flattened_paths():
  case = next(c for c in _cases() if c["name"] == "example_designs:simba_like")
  spec = _load_case(case)
  names = [k for k, _ in spec.ert.entries]
  for s in spec.arch.storage:
    if not s.is_dummy:
      assert s.ert_name in names
  assert spec.arch.storage[-1].ert_name == "System_top_level.DRAM[1..1]"
  assert spec.arch.arithmetic.ert_name == "System_top_level.mac[1..256]"


def _level_tuple(s):
  return (s.name, s.instances, s.mesh_x, s.mesh_y, s.depth, s.block_size,
          s.word_bits, s.cluster_size, s.read_bandwidth, s.write_bandwidth,
          s.shared_bandwidth, s.is_dummy)


def _assert_same_arch(user, flat):
  assert [_level_tuple(s) for s in user.arch.storage] == \
      [_level_tuple(s) for s in flat.arch.storage]
  ua, fa = user.arch.arithmetic, flat.arch.arithmetic
  assert (ua.name, ua.instances, ua.mesh_x, ua.mesh_y, ua.word_bits) == \
      (fa.name, fa.instances, fa.mesh_x, fa.mesh_y, fa.word_bits)
  assert user.problem.dims == flat.problem.dims
  assert user.problem.bounds == flat.problem.bounds
  assert user.problem.dataspaces == flat.problem.dataspaces


def _directive_key(d):
  return (d.target, d.type, d.factors, frozenset(d.keep or ()),
          frozenset(d.bypass or ()), d.split)


@needs_ref
@pytest.mark.parametrize("design", ["eyeriss_like", "simba_like",
                                    "simple_output_stationary",
                                    "simple_weight_stationary"])
def test_v04_example_design_matches_flattened(design):
  base = REF / "example_designs"
  user = load_spec(base / design / "arch.yaml",
                   base / "_include" / "default_problem.yaml",
                   base / "_include" / "mapper.yaml")
  flat = load_spec(base / design / "ref_outputs" / "default_problem" /
                   "parsed-processed-input.yaml")
  _assert_same_arch(user, flat)
  assert user.arch.storage[-1].ert_name == flat.arch.storage[-1].ert_name
  assert user.mapper.optimization_metrics == flat.mapper.optimization_metrics
  # Node constraints: keep/bypass (incl. !Parallel siblings), spatial
  # factors and splits, and the dummy-level defaults agree with the front
  # end's (permutations differ: it reorders them).
  u = {_directive_key(d) for d in user.constraints}
  f = {_directive_key(d) for d in flat.constraints}
  assert {k for k in u if k[1] != "temporal"} == \
      {k for k in f if k[1] != "temporal"}


_TUTORIAL = [
    ("00-model-conv1d-1level", "1level.arch.yaml", "conv1d.prob.yaml",
     "conv1d-1level.map.yaml", "ref-output"),
    ("01-model-conv1d-2level", "2level.arch.yaml", "conv1d.prob.yaml",
     "conv1d-2level-os.map.yaml", "ref-output/os"),
    ("02-model-conv1d+oc-2level", "2level.arch.yaml", "conv1d+oc.prob.yaml",
     "conv1d+oc-2level-os-tiled.map.yaml", "ref-output/tiling"),
    ("03-model-conv1d+oc-3level", "3level.arch.yaml", "conv1d+oc.prob.yaml",
     "conv1d+oc-3level-bypass.map.yaml", "ref-output/bypass"),
]


@needs_ref
@pytest.mark.parametrize("folder,arch,prob,mapping,out", _TUTORIAL,
                         ids=[t[0] for t in _TUTORIAL])
def test_v04_tutorial_matches_flattened(folder, arch, prob, mapping, out):
  d = REF / "tutorial" / folder
  user = load_spec(d / "arch" / arch, d / "prob" / prob, d / "map" / mapping)
  flat = load_spec(d / out / "parsed-processed-input.yaml")
  _assert_same_arch(user, flat)
  key = lambda x: repr(_directive_key(x) + (x.permutation,))
  assert sorted(user.mapping, key=key) == sorted(flat.mapping, key=key) or \
      sorted(map(key, user.mapping)) == sorted(map(key, flat.mapping))


@needs_ref
def test_v04_spatial_container_renames_mapping_target():
  d = REF / "tutorial" / "04-model-conv1d+oc-3levelspatial"
  user = load_spec(d / "arch" / "3levelspatial.arch.yaml",
                   d / "prob" / "conv1d+oc+ic.prob.yaml",
                   d / "map" / "conv1d+oc+ic-3levelspatial-cp-ws.map.yaml")
  flat = load_spec(d / "ref-output" / "cp" / "parsed-processed-input.yaml")
  names = [s.name for s in user.arch.storage]
  # The v0.4 text puts the PE container below GlobalBuffer (the reference's
  # older front end put it above; see jaxloop/spec/arch.py).
  assert names == ["RegisterFile", "inter_PE_spatial", "GlobalBuffer",
                   "MainMemory"]
  assert user.arch.storage[0].instances == 16
  assert user.arch.storage[2].instances == 1
  spatial = [x for x in user.mapping if x.type == "spatial"]
  assert [x.target for x in spatial] == ["inter_PE_spatial"]
  assert sorted(_directive_key(x) for x in user.mapping) == \
      sorted(_directive_key(x) for x in flat.mapping)


@needs_ref
def test_v04_tutorial_mapper_inputs_load():
  d = REF / "tutorial" / "05-mapper-conv1d+oc-3level"
  spec = load_spec(d / "arch" / "3level.arch.yaml",
                   d / "prob" / "conv1d+oc.prob.yaml",
                   d / "constraints" /
                   "conv1d+oc-3level-1mapping.constraints.yaml",
                   d / "mapper" / "exhaustive.mapper.yaml")
  assert spec.mapping == ()
  assert len(spec.constraints) == 5
  assert spec.mapper.algorithm == "linear_pruned"
  assert spec.mapper.optimization_metrics == ("delay", "energy")
  d = REF / "tutorial" / "06-mapper-convlayer-eyeriss"
  spec = load_spec(d / "arch" / "eyeriss_like.yaml",
                   d / "prob" / "VGG02_layer5.yaml",
                   d / "mapper" / "mapper.yaml")
  flat = load_spec(d / "ref-output" / "parsed-processed-input.yaml")
  _assert_same_arch(spec, flat)


@needs_ref
def test_v03_subtree_arch_loads():
  d = REF / "tutorial" / "07-timeloop+accelergy-eyeriss"
  spec = load_spec(d / "arch" / "eyeriss_like-float32.yaml",
                   d / "prob" / "prob.yaml")
  names = [(s.name, s.instances, s.mesh_x) for s in spec.arch.storage]
  assert names[-1] == ("DRAM", 1, 1)
  assert ("DummyBuffer", 14, 14) in names
  assert spec.arch.arithmetic.instances == 168
  assert spec.arch.storage[0].word_bits == 32


@needs_ref
def test_layer_shapes_include_and_deep_merge():
  doc = load_yaml_files([REF / "layer_shapes" / "alexnet" / "0.yaml"])
  inst = doc["problem"]["instance"]
  assert inst["N"] == 1 and inst["C"] == 3 and inst["R"] == 11
  arch = REF / "tutorial" / "03-model-conv1d+oc-3level" / "arch" / \
      "3level.arch.yaml"
  with pytest.warns(UserWarning, match="[HW]Stride"):
    spec = load_spec(arch, REF / "layer_shapes" / "alexnet" / "0.yaml")
  coefs = dict(spec.problem.coefficients)
  assert coefs["Hstride"] == 4 and coefs["Wstride"] == 4
  assert dict(zip(spec.problem.dims, spec.problem.bounds))["P"] == 55


@needs_ref
def test_tutorial08_jinja_renders():
  """Tutorial 08's inputs are Jinja templates: `{% if reg_enabled|default
  (True) %}` around a component, `{{datawidth_jinja|default(8)}}`."""
  d = REF / "tutorial" / "08-design-space-exploration-2024" / "inputs"
  files = (d / "arch.yaml", d / "variables.yaml")

  def names(doc):
    return [n.get("name") for n in doc["architecture"]["nodes"]]

  doc = load_yaml_files(files)
  assert "reg" in names(doc) and doc["variables"]["DATAWIDTH"] == 8
  doc = load_yaml_files(files, variables={"reg_enabled": False,
                                          "datawidth_jinja": 16})
  assert "reg" not in names(doc) and doc["variables"]["DATAWIDTH"] == 16


def test_variables_and_expressions(tmp_path):
  (tmp_path / "a.yaml").write_text("""
variables: {version: 0.4, DW: 8, global_cycle_seconds: 2e-9}
architecture:
  version: 0.4
  nodes:
  - !Container {name: sys, attributes: {technology: "45nm"}}
  - !Component
    name: DRAM
    class: DRAM
    attributes: {width: 64, datawidth: DW}
  - !Container {name: PE, spatial: {meshX: 2 * 2}}
  - !Component
    name: reg
    class: SRAM
    attributes: {datawidth: DW, depth: 2**4, width: datawidth * 3}
  - !Component
    name: mac
    class: intmac
    attributes:
      datawidth: max(DW, 16)
problem:
  shape: {name: p, dimensions: [K], data_spaces: [{name: A, projection: [[[K]]]}]}
  instance: {K: 4}
""")
  spec = load_spec(tmp_path / "a.yaml")
  reg = spec.arch.storage[0]
  assert (reg.depth, reg.word_bits, reg.width, reg.block_size) == \
      (16, 8, 24, 3)
  assert reg.instances == 4 and reg.mesh_x == 4
  assert spec.arch.storage[1].is_dummy
  assert spec.arch.arithmetic.word_bits == 16
  assert spec.arch.global_cycle_seconds == 2e-9
  assert spec.arch.technology == "45nm"
  assert reg.ert_name == "sys_top_level.reg[1..4]"


DIMS = ("C", "K", "R", "P")


@pytest.mark.parametrize("form", [
    "R=3 P=16", "R=3,P=16", "R3 P16", "R = 3, P = 16", ["R=3", "P=16"],
    {"R": 3, "P": 16}, [{"R": 3}, "P16"]])
def test_factor_forms_parse_equally(form):
  factors, bounds = parse_factors(form, DIMS, path="f")
  assert factors == (("R", 3), ("P", 16)) and bounds == ()


def test_factor_bounds_and_permutations():
  factors, bounds = parse_factors("K<=4 C>=2 R=0", DIMS, path="f",
                                  constraint=True)
  assert factors == (("R", 0),)
  assert bounds == (("K", "<=", 4), ("C", ">=", 2))
  assert parse_permutation("PRKC", DIMS, path="p") == ("P", "R", "K", "C")
  assert parse_permutation(["P", "R"], DIMS, path="p") == ("P", "R")
  assert parse_permutation("P R", DIMS, path="p") == ("P", "R")
  with pytest.raises(SpecError, match="only allowed in constraints"):
    parse_factors("K<=4", DIMS, path="f")
  with pytest.raises(SpecError, match="positive integer"):
    parse_factors("K=0", DIMS, path="f")


# The small Conv1D inputs the error corpus (tests/corpus/bad) breaks.
CONV1D = Path(__file__).resolve().parent / "corpus" / "base" / "conv1d"


def _write(tmp_path, **files):
  paths = []
  for name, text in files.items():
    p = tmp_path / f"{name}.yaml"
    p.write_text(text)
    paths.append(p)
  return paths


def test_good_inputs_load():
  spec = load_spec(*(CONV1D / n for n in ("arch.yaml", "prob.yaml",
                                          "map.yaml")))
  assert [s.name for s in spec.arch.storage] == ["Buffer", "DRAM"]
  assert spec.arch.storage[1].depth is None
  assert spec.mapping[1].factors == (("R", 3), ("P", 4))
  assert spec.mapping[0].where.endswith("map.yaml:2")


def test_constraint_forms_and_tables_in_paths(tmp_path):
  arch = (CONV1D / "arch.yaml").read_text().replace(
      "  - !Component\n    name: Buffer",
      "  - !Container {name: PE, spatial: {meshX: 4}}\n"
      "  - !Component\n    name: Buffer")
  files = _write(
      tmp_path, arch=arch, prob=(CONV1D / "prob.yaml").read_text(),
      c1="mapspace_constraints: {targets: [{target: DRAM, type: temporal, "
      "factors: R=0 P<=4}]}\n",
      c2="constraints:\n  targets:\n  - {target: PE, type: spatial, "
      "factors: [P=4], split: 1}\n",
      c3="mapspace:\n  constraints:\n  - {target: Buffer, type: dataspace, "
      "keep: [Outputs]}\n",
      ert="ERT:\n  version: 0.4\n  tables:\n  - name: sys_top_level.Buffer"
      "[1..4]\n    actions:\n    - {name: read, energy: 1.5}\n",
      art="ART: {version: 0.4, tables: [{name: \"x.Buffer[1..4]\", area: 2}]}\n")
  spec = load_spec(*files)
  by_target = {(d.target, d.type): d for d in spec.constraints}
  dram = by_target[("DRAM", "temporal")]
  assert dram.factors == (("R", 0),) and dram.factor_bounds == (
      ("P", "<=", 4),)
  assert by_target[("inter_PE_spatial", "spatial")].split == 1
  assert by_target[("Buffer", "bypass")].keep == ("Outputs",)
  # Front-end defaults for the storage-less level.
  assert by_target[("inter_PE_spatial", "bypass")].bypass == (
      "Weights", "Inputs", "Outputs")
  assert spec.ert.lookup("sys_top_level.Buffer[1..4]")[0].energy == 1.5
  assert spec.art.lookup(spec.arch.storage[0].ert_name) == 2.0


@needs_ref
def test_layer_shapes_sample_loads():
  folders = sorted(p for p in (REF / "layer_shapes").iterdir() if p.is_dir())
  assert folders
  for folder in folders:
    f = sorted(folder.rglob("*.yaml"))[0]
    with warnings.catch_warnings():
      warnings.simplefilter("ignore")
      doc = load_yaml_files([f])
    assert "problem" in doc, f


def test_constraint_split_expression_over_the_problem_instance():
  """A constraint's ``split`` may be the front end's expression over the
  problem instance (tutorial 08: ``len(spec.problem.instance)``, which is
  the instance's entries plus its densities entry); anything else that is
  not a number is refused naming the key."""
  from jaxloop.spec.mapping import Context, parse_directives
  ctx = Context(dims=("C", "K", "R", "P"), dataspaces=("Weights",),
                targets=("Buf",), instance=(("C", 2), ("K", 4), ("R", 3),
                                            ("P", 8), ("densities", {})))
  item = {"target": "Buf", "type": "spatial",
          "split": "len(spec.problem.instance)"}
  (d,) = parse_directives([item], ctx, path="constraints",
                          constraint=True)
  assert d.split == 5
  with pytest.raises(SpecError, match="split"):
    parse_directives([dict(item, split="len(spec.arch)")], ctx,
                     path="constraints", constraint=True)
  with pytest.raises(SpecError, match="split"):
    parse_directives([item], ctx, path="mapping", constraint=False)
