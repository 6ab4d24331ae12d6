"""Timeloop's v0.4 workflow: Jinja templates (the exercises' top.yaml.jinja2
and layer_shapes), YAML merge keys, v0.3 architectures, tables without a
problem, and the errors templates can raise."""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
import yaml

import jaxloop
from jaxloop.cli import main
from jaxloop.errors import SpecError, UnsupportedFeatureError
from jaxloop.report import stats_dict
from jaxloop.spec import load_architecture, load_spec, load_yaml_files
from jaxloop.spec.templates import parse_variables
from jaxloop.spec.yamlio import parse_yaml_text
from jaxloop.validate import compare
from support import REFERENCE as REF

needs_ref = pytest.mark.skipif(
    not (REF / "cases.json").is_file(),
    reason=f"Timeloop reference cases not found at {REF} "
    "(set JAXLOOP_REFERENCE to the timeloop-reference folder)")

DESIGNS = REF / "example_designs"
TOP = DESIGNS / "top.yaml.jinja2"
T07 = REF / "tutorial" / "07-timeloop+accelergy-eyeriss"
# (layer file relative to top.yaml.jinja2, {dim: bound} to find in it)
LAYERS = {
    "vgg16": ("../layer_shapes/vgg16/00.yaml",
              {"C": 3, "M": 64, "P": 224, "R": 3}),
    "resnet18_stride2": ("../layer_shapes/resnet18/05.yaml",
                         {"C": 64, "M": 128, "P": 28, "R": 3}),
    "gpt2_gemm": ("../layer_shapes/gpt2/000.yaml",
                  {"C": 1024, "M": 3072, "P": 256, "R": 1}),
}
ARCHS = ("eyeriss_like", "simba_like", "simple_output_stationary",
         "simple_weight_stationary")


def _load(arch: str, layer: str) -> jaxloop.Workload:
  with warnings.catch_warnings():
    # resnet18's layers write HStride/WStride (read case-insensitively, with
    # a warning)
    warnings.simplefilter("ignore")
    return jaxloop.load(TOP, variables={"architecture": arch,
                                        "problem": LAYERS[layer][0]})


# --- the example designs through top.yaml.jinja2 ---------------------------


@needs_ref
@pytest.mark.parametrize("arch", ARCHS)
def test_example_design_loads_through_template(arch):
  """Each design with several layer_shapes files: the template pulls in
  the problem (include_text + `<<<:`), the architecture, the compound
  components (include_all) and the mapper section."""
  for layer, (_, dims) in LAYERS.items():
    if arch == "eyeriss_like" and layer == "gpt2_gemm":
      continue   # eyeriss_like has 3 layers below; one GEMM elsewhere is enough
    wl = _load(arch, layer)
    bounds = dict(zip(wl.spec.problem.dims, wl.spec.problem.bounds))
    assert {d: bounds[d] for d in dims} == dims, (arch, layer)
    assert wl.spec.arch.storage[-1].name == "DRAM"
    assert wl.spec.mapper is not None and \
        wl.spec.mapper.optimization_metrics == ("edp",)
    # the components were found: the energies were estimated from them
    assert float(wl.params.read_energy[-1]) > 0
    names = [Path(s).name for s in wl.spec.sources]
    assert "arch.yaml" in names and "smartbuffer_SRAM.yaml" in names
  coefs = dict(_load(arch, "resnet18_stride2").spec.problem.coefficients)
  assert coefs["Hstride"] == 2 and coefs["Wstride"] == 2


@needs_ref
def test_template_alternative_and_default_problem():
  """Without `problem`, top.yaml.jinja2 takes _include/default_problem.yaml
  (none of the designs has its own problem.yaml)."""
  wl = jaxloop.load(TOP, variables={"architecture": "simple_output_stationary"})
  bounds = dict(zip(wl.spec.problem.dims, wl.spec.problem.bounds))
  assert (bounds["C"], bounds["M"], bounds["P"]) == (3, 32, 112)
  coefs = dict(wl.spec.problem.coefficients)
  assert coefs["Hstride"] == 2


@needs_ref
@pytest.mark.slow
def test_template_design_maps():
  wl = _load("simple_weight_stationary", "vgg16")
  res = jaxloop.search(wl, method="random", budget=2000, progress=False,
                       seed=0)
  assert res.best_mapping is not None
  assert res.best_stats.valid


@needs_ref
def test_tutorial07_template_reproduces_timeloop():
  """Tutorial 07's user-facing v0.4 files: arch/arch.yaml is a template
  (`{{psum_datawidth}}`, `class: {{mac_class}}`) and the component files use
  `<<: *write_action` with an explicit `name:`; with the variables of the
  reference run, its mapping and Accelergy's tables, every figure matches
  Timeloop's."""
  out = T07 / "ref-output" / "intmac"
  files = [T07 / "arch" / "arch.yaml",
           *sorted((T07 / "arch" / "components").glob("*.yaml")),
           T07 / "prob" / "prob.yaml", T07 / "mapper" / "mapper.yaml",
           out / "timeloop-mapper.map.yaml", out / "timeloop-mapper.ERT.yaml",
           out / "timeloop-mapper.ART.yaml"]
  wl = jaxloop.load(*files, variables={"psum_datawidth": 16,
                                       "input_weight_datawidth": 8,
                                       "mac_class": "intmac"})
  got = stats_dict(wl.structure, wl.evaluate())
  expected = json.loads((out / "expected.json").read_text())
  assert compare(got, expected) == []


# --- YAML semantics ----------------------------------------------------------


def test_merge_key_explicit_keys_override():
  doc = parse_yaml_text("""
actions:
- &write_action
  name: write
  subcomponents: [{name: storage}]
- name: update
  << : *write_action
- <<: [*write_action, {name: other, extra: 1}]
  name: both
""", "c.yaml")
  write, update, both = doc["actions"]
  assert update["name"] == "update" and write["name"] == "write"
  assert update["subcomponents"] == write["subcomponents"]
  assert update.key_where["name"] == "c.yaml:6"
  assert both["name"] == "both" and both["extra"] == 1


@needs_ref
def test_merge_key_in_reference_components():
  doc = load_yaml_files([DESIGNS / "_components" / "smartbuffer_SRAM.yaml"])
  actions = {a["name"]: a for a in doc["compound_components"]["classes"][0]
             ["actions"]}
  assert actions["update"]["subcomponents"] == \
      actions["write"]["subcomponents"]


def test_deep_merge_lists_concatenate_and_keys_win():
  doc = parse_yaml_text("""
base_ignore: &b {version: 0.4, instance: {N: 1, C: 1}, tags: [a]}
problem:
  <<<: *b
  instance: {C: 3}
  tags: [b]
""", "p.yaml")
  assert dict(doc["problem"]["instance"]) == {"N": 1, "C": 3}
  assert list(doc["problem"]["tags"]) == ["b", "a"]


@pytest.mark.parametrize("text", [
    "a: {x: 1, x: 2}\n",
    "b: &b {x: 1}\na: {<<: *b, y: 1, y: 2}\n",
    "b: &b {x: 1}\na:\n  <<<: *b\n  y: 1\n  y: 2\n",
])
def test_genuine_duplicate_key_is_an_error(text):
  with pytest.raises(SpecError, match="duplicate key") as info:
    parse_yaml_text(text, "d.yaml")
  assert info.value.where.startswith("d.yaml:")


# --- v0.3 -------------------------------------------------------------------


@needs_ref
def test_v03_tutorial07_loads():
  """eyeriss_like-int16.yaml (v0.3: memory_depth, memory_width, word_bits
  under subtree/local) loads with the v0.4 component files; its attributes
  get their v0.4 names.  Its MAC's v0.3 `width` cannot become the v0.4
  intmac's multiplier_width/adder_width by renaming: the estimate says so."""
  files = [T07 / "arch" / "eyeriss_like-int16.yaml",
           *sorted((T07 / "arch" / "components").glob("*.yaml")),
           T07 / "prob" / "prob.yaml", T07 / "mapper" / "mapper.yaml"]
  spec = load_spec(*files)
  glb = next(s for s in spec.arch.storage if s.name == "shared_glb")
  assert (glb.depth, glb.width, glb.word_bits) == (16384, 64, 16)
  attrs = dict(glb.attributes)
  assert attrs["depth"] == 16384 and "memory_depth" not in attrs
  with pytest.raises(SpecError) as info:
    jaxloop.load(*files)
  text = str(info.value)
  assert "multiplier_width" in text and "v0.3" in text
  assert "eyeriss_like-int16.yaml" in info.value.where


# --- ert without a problem -----------------------------------------------------


@needs_ref
def test_ert_without_problem(tmp_path, capsys):
  arch = DESIGNS / "simba_like" / "arch.yaml"
  comps = sorted(str(p) for p in (DESIGNS / "_components").glob("*.yaml"))
  spec = load_architecture(arch, *comps)
  assert spec.problem is None and spec.arch.storage[-1].name == "DRAM"
  assert main(["ert", str(arch), *comps, "-o", str(tmp_path / "a")]) == 0
  ert = yaml.safe_load((tmp_path / "a" / "ERT.yaml").read_text())
  names = [t["name"] for t in ert["ERT"]["tables"]]
  assert "System_top_level.GlobalBuffer[1..1]" in names
  # and through the template
  assert main(["ert", str(TOP), "--var", "architecture=simba_like", "-o",
               str(tmp_path / "b")]) == 0
  assert (tmp_path / "b" / "ERT.yaml").read_text() == \
      (tmp_path / "a" / "ERT.yaml").read_text()
  capsys.readouterr()


# --- template errors -----------------------------------------------------------


def _write(tmp_path, name, text):
  p = tmp_path / name
  p.parent.mkdir(parents=True, exist_ok=True)
  p.write_text(text)
  return p


def test_undefined_variable_names_file_line_and_fix(tmp_path):
  p = _write(tmp_path, "t.yaml.jinja2", "a: 1\n\nb: {{ depth }}\n")
  with pytest.raises(SpecError) as info:
    load_yaml_files([p])
  e = info.value
  assert e.where.endswith("t.yaml.jinja2:3") and e.path == "template"
  assert "undefined template variable 'depth'" in e.message
  assert "--var depth=VALUE" in e.hint and "variables=" in e.hint
  assert load_yaml_files([p], variables={"depth": 8})["b"] == 8


# (files, the first is loaded; message pattern; end of `where`)
ERROR_CASES = {
    "undefined_in_included_file": (
        {"top.yaml.jinja2": "a: {{ include('sub/inner.yaml', 'x') }}\n",
         "sub/inner.yaml": "x:\n  y: {{ missing }}\n"},
        "undefined template variable 'missing'", "inner.yaml:2"),
    "block_left_open": (
        {"s.yaml": "a: 1\n{% if x %}\nb: 2\n"},
        "template syntax error: .*'endif'", "s.yaml:2"),
    "missing_include": (
        {"m.yaml": "a: 1\nb: {{ include('nope.yaml') }}\n"},
        "file not found: 'nope.yaml' \\(include looked for .*nope.yaml\\)",
        "m.yaml:2"),
    "include_key": (
        {"t.yaml": "problem: {{ include('p.yaml', 'problme') }}\n",
         "p.yaml": "problem: {a: 1}\n"},
        "no key 'problme' in .*p.yaml \\(found: problem\\)", "t.yaml:1"),
    # text pasted by include_text keeps the pasted file's lines
    "include_text_origin": (
        {"layers/l.yaml": "{{include_text('../base.yaml')}}\nproblem:\n"
                          "  <<<: *b\n",
         "base.yaml": "base_ignore: &b\n  x: 1\n  x: 2\n"},
        "duplicate key 'x'", "base.yaml:3"),
}


@pytest.mark.parametrize("case", ERROR_CASES)
def test_template_error_names_file_and_line(tmp_path, case):
  files, match, where = ERROR_CASES[case]
  paths = [_write(tmp_path, name, text) for name, text in files.items()]
  with pytest.raises(SpecError, match=match) as info:
    load_yaml_files(paths[:1], variables={"x": 1})
  assert info.value.where.endswith(where), info.value


def test_include_search_path_and_include_all(tmp_path):
  _write(tmp_path, "lib/c1.yaml", "cc: {classes: [{name: one}]}\n")
  _write(tmp_path, "lib/c2.yaml", "cc: {classes: [{name: two}]}\n")
  _write(tmp_path, "lib/only.yaml", "v: {k: 5}\n")
  p = _write(tmp_path, "in/t.yaml.jinja2", """{{ add_to_path(cwd() ~ '/../lib') }}
{% if path_exists('only.yaml') %}
one: {{ include('only.yaml', 'v') }}
{% endif %}
all: {{ include_all('c*.yaml', 'cc.classes') }}
single: {{ include_all('only.yaml', 'v.k') }}
""")
  doc = load_yaml_files([p])
  assert doc["one"] == {"k": 5} and doc["single"] == 5
  assert [[c["name"] for c in x] for x in doc["all"]] == [["one"], ["two"]]
  with pytest.raises(SpecError, match="matches 2 files"):
    load_yaml_files([_write(tmp_path, "in/u.yaml",
                            "{{ add_to_path('../lib') }}\n"
                            "a: {{ include('c*.yaml') }}\n")])


def test_left_out_template_function_is_unsupported(tmp_path):
  p = _write(tmp_path, "e.yaml", "{{ setenv('A', 'B') }}\na: 1\n")
  with pytest.raises(UnsupportedFeatureError, match="setenv"):
    load_yaml_files([p])


def test_var_arguments():
  assert parse_variables(["a=1", "b=x=y"]) == {"a": "1", "b": "x=y"}
  with pytest.raises(SpecError, match="NAME=VALUE"):
    parse_variables(["novalue"])
  with pytest.raises(SpecError, match="given twice"):
    parse_variables(["a=1", "a=2"])


@needs_ref
def test_cli_template_error_is_one_message(tmp_path, capsys):
  code = main(["model", str(TOP), "-o", str(tmp_path / "out")])
  err = capsys.readouterr().err
  assert code == 2 and "Traceback" not in err
  assert err.startswith("jaxloop: error: template (")
  assert "top.yaml.jinja2:20" in err
  assert "undefined template variable 'architecture'" in err
  assert "--var architecture=VALUE" in err
  assert not (tmp_path / "out").exists()
