"""Timeloop's tutorial exercises run from their user-facing files.

For each exercise (tutorial/00-... to 08-... in the reference folder) the
files a user passes (arch/, prob/, map/, constraints/, mapper/, templates
with their variables) are loaded with Accelergy's ERT/ART of the reference
run (and, for mapper exercises, the mapping Timeloop's mapper wrote), then
evaluated and compared with Timeloop's expected.json.  Where the user-facing
files do not describe the reference run, the tests pin down exactly how
they differ: the edited copy reproduces Timeloop and the files as shipped
do not.  docs/tutorials.md has the table (exercise, files, command,
verdict) and says which test covers which exercise.

Covered elsewhere (not repeated here): tutorial 07 ``intmac`` from
``arch/arch.yaml`` (tests/test_templates.py,
``test_tutorial07_template_reproduces_timeloop``).  tests/test_spec.py
compares the parsed specs (not the figures) of 00, 01 os, 02 tiling, 03
bypass and 04 cp with the flattened inputs.
"""
from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import pytest

import jaxloop
from jaxloop.errors import SpecError, SpecWarning
from jaxloop.validate import compare
from support import REFERENCE, reference_cases

TUT = REFERENCE / "tutorial"

needs_ref = pytest.mark.skipif(
    not (REFERENCE / "cases.json").is_file(),
    reason=f"Timeloop reference cases not found at {REFERENCE} "
    "(set JAXLOOP_REFERENCE to the timeloop-reference folder)")

T00 = "00-model-conv1d-1level"
T01 = "01-model-conv1d-2level"
T02 = "02-model-conv1d+oc-2level"
T03 = "03-model-conv1d+oc-3level"
T04 = "04-model-conv1d+oc-3levelspatial"
T05 = "05-mapper-conv1d+oc-3level"
T06 = "06-mapper-convlayer-eyeriss"
T07 = "07-timeloop+accelergy-eyeriss"
T08 = "08-design-space-exploration-2024"

# The reference runs of 00-02 name their top level `PE_top_level` (their
# top container was called `PE`); the user files call it `accelerator`
# (00) or `System` (01, 02), so the ERT/ART entries match by component name
# only, with this warning.
PE_TOP = r"'PE_top_level' there"

# case name in cases.json -> (user-facing files relative to the tutorial
# folder, template variables, warning expected (regex) or None for strict)
EXERCISES = {
    f"tutorial:{T00}": (
        ["arch/1level.arch.yaml", "prob/conv1d.prob.yaml",
         "map/conv1d-1level.map.yaml"], None, PE_TOP),
    f"tutorial:{T01}:os": (
        ["arch/2level.arch.yaml", "prob/conv1d.prob.yaml",
         "map/conv1d-2level-os.map.yaml"], None, PE_TOP),
    f"tutorial:{T01}:ws": (
        ["arch/2level.arch.yaml", "prob/conv1d.prob.yaml",
         "map/conv1d-2level-ws.map.yaml"], None, PE_TOP),
    f"tutorial:{T02}:no-tiling": (
        ["arch/2level.arch.yaml", "prob/conv1d+oc.prob.yaml",
         "map/conv1d+oc-2level-os.map.yaml"], None, PE_TOP),
    f"tutorial:{T02}:tiling": (
        ["arch/2level.arch.yaml", "prob/conv1d+oc.prob.yaml",
         "map/conv1d+oc-2level-os-tiled.map.yaml"], None, PE_TOP),
    f"tutorial:{T03}:no-bypass": (
        ["arch/3level.arch.yaml", "prob/conv1d+oc.prob.yaml",
         "map/conv1d+oc-3level.map.yaml"], None, None),
    f"tutorial:{T03}:bypass": (
        ["arch/3level.arch.yaml", "prob/conv1d+oc.prob.yaml",
         "map/conv1d+oc-3level-bypass.map.yaml"], None, None),
    # Mapper exercises: the user's constraints and mapper section are the
    # run's (identical to the flattened input's); the mapper's map.yaml
    # satisfies them, so they are loaded too.
    f"tutorial:{T05}:baked": (
        ["arch/3level.arch.yaml", "prob/conv1d+oc.prob.yaml",
         "constraints/conv1d+oc-3level-1mapping.constraints.yaml",
         "mapper/exhaustive.mapper.yaml"], None, None),
    f"tutorial:{T05}:freebypass": (
        ["arch/3level.arch.yaml", "prob/conv1d+oc.prob.yaml",
         "constraints/conv1d+oc-3level-freebypass.constraints.yaml",
         "mapper/exhaustive.mapper.yaml"], None, None),
    f"tutorial:{T05}:null": (
        ["arch/3level.arch.yaml", "prob/conv1d+oc.prob.yaml",
         "constraints/null.constraints.yaml",
         "mapper/exhaustive.mapper.yaml"], None, None),
    f"tutorial:{T06}": (
        ["arch/eyeriss_like.yaml", "arch/components/intmac.yaml",
         "arch/components/regfile.yaml", "arch/components/smartbuffer_RF.yaml",
         "arch/components/smartbuffer_SRAM.yaml", "prob/VGG02_layer5.yaml",
         "mapper/mapper.yaml"], None, None),
    f"tutorial:{T07}:fpmac": (
        ["arch/arch.yaml", "arch/components/intmac.yaml",
         "arch/components/regfile.yaml", "arch/components/smartbuffer_RF.yaml",
         "arch/components/smartbuffer_SRAM.yaml", "prob/prob.yaml",
         "mapper/mapper.yaml"],
        {"psum_datawidth": 32, "input_weight_datawidth": 32,
         "mac_class": "fpmac"}, None),
}


def _case(name: str) -> dict:
  for case in reference_cases():
    if case["name"] == name:
      return case
  pytest.skip(f"case {name} not in {REFERENCE / 'cases.json'}")


def _folder(case: dict) -> Path:
  """The tutorial folder of a case (``tutorial/<exercise>``)."""
  return REFERENCE / Path(case["dir"]).parts[0] / Path(case["dir"]).parts[1]


def _reference_files(case: dict) -> list[Path]:
  """The mapper's mapping (mapper cases) and Accelergy's tables."""
  d = REFERENCE / case["dir"]
  files = [d / case["mapping"]] if case["mapping"] != case["input"] else []
  return files + [d / case["ert"], d / case["art"]]


def _mismatches(case: dict, files, variables=None, warns=None) -> list[str]:
  """compare() of the run of ``files`` (plus the reference tables) with
  the case's expected.json; strict (no fallback) unless ``warns`` is a
  regex of the one warning expected."""
  paths = [*files, *_reference_files(case)]
  if warns is None:
    wl = jaxloop.load(*paths, variables=variables, strict=True)
  else:
    with pytest.warns(SpecWarning, match=warns):
      wl = jaxloop.load(*paths, variables=variables)
  expected = json.loads((REFERENCE / case["dir"] / case["expected"])
                        .read_text())
  return compare(wl.report(wl.evaluate()), expected)


def _edited_copy(src: Path, dst: Path, old: str, new: str) -> Path:
  """``src`` written to ``dst`` with the one occurrence of ``old`` replaced."""
  text = src.read_text()
  assert text.count(old) == 1, (src, old)
  dst.parent.mkdir(parents=True, exist_ok=True)
  dst.write_text(text.replace(old, new))
  return dst


# --- the exercises whose user-facing files are the reference run ----------


@needs_ref
@pytest.mark.parametrize("name", list(EXERCISES))
def test_user_files_reproduce_timeloop(name):
  case = _case(name)
  files, variables, warns = EXERCISES[name]
  d = _folder(case)
  assert _mismatches(case, [d / f for f in files], variables, warns) == []


@needs_ref
@pytest.mark.parametrize("name,container", [
    (f"tutorial:{T00}", "accelerator"), (f"tutorial:{T01}:os", "System"),
    (f"tutorial:{T02}:tiling", "System")])
def test_00_02_top_container_is_the_only_difference(name, container,
                                                    tmp_path):
  """With the top container renamed `PE` (as in the reference run: its ERT
  says `PE_top_level.Buffer[1..1]`), the ERT/ART names match exactly and
  the strict load reproduces Timeloop."""
  case = _case(name)
  files, _, _ = EXERCISES[name]
  d = _folder(case)
  arch = _edited_copy(d / files[0], tmp_path / files[0],
                      f"name: {container}\n", "name: PE\n")
  paths = [arch, *(d / f for f in files[1:])]
  assert _mismatches(case, paths) == []


# --- 04: the reference ran another architecture ----------------------------


def _t04_files(variant: str) -> list[str]:
  return ["arch/3levelspatial.arch.yaml", "prob/conv1d+oc+ic.prob.yaml",
          f"map/conv1d+oc+ic-3levelspatial-{variant}-ws.map.yaml"]


_T04_PE = "  - !Container\n    name: PE\n    spatial: {meshX: 16}\n\n"
_T04_GLB = "  - !Component\n    name: GlobalBuffer\n"


@needs_ref
@pytest.mark.parametrize("variant", ["cp", "kp"])
def test_04_reference_has_global_buffer_inside_pe(variant, tmp_path):
  """Tutorial 04's arch puts the `PE` container (meshX 16) after
  GlobalBuffer: one GlobalBuffer shared by 16 PEs, as its README describes.
  The reference run's flattened input has `inter_PE_spatial` above
  `GlobalBuffer[1..16]`: a GlobalBuffer in each PE.  (The same front end
  puts a component listed before a spatial container above it in 06, 07
  and 08, so the reference run was made from an arch with the container
  first.)  As shipped, only GlobalBuffer's figures and the energy totals
  differ; with the container moved above GlobalBuffer, every figure
  matches."""
  case = _case(f"tutorial:{T04}:{variant}")
  d = _folder(case)
  files = _t04_files(variant)
  shipped = _mismatches(case, [d / f for f in files],
                        warns=r"GlobalBuffer\[1\.\.16\]")
  assert "levels.GlobalBuffer.instances: got 1, expected 16" in shipped
  assert all(m.startswith(("levels.GlobalBuffer.", "summary."))
             for m in shipped), shipped
  text = (d / files[0]).read_text()
  assert text.count(_T04_PE) == 1 and text.count(_T04_GLB) == 1
  moved = text.replace(_T04_PE, "").replace(_T04_GLB, _T04_PE + _T04_GLB)
  arch = tmp_path / "3levelspatial.arch.yaml"
  arch.write_text(moved)
  assert _mismatches(case, [arch, *(d / f for f in files[1:])]) == []


# --- 07: the v0.3 architectures are another design -------------------------


@needs_ref
def test_07_v03_arch_is_not_the_reference_design():
  """The README's command uses arch/eyeriss_like-int16.yaml (v0.3; also
  -float32.yaml) and constraints/*.yaml (not shipped).  Those files describe
  another design: a real 14-instance `DummyBuffer` regfile level (depth 16)
  and no `inter_PE_column_spatial`/`inter_PE_spatial` levels, so the
  reference mapping (which targets them) does not fit."""
  case = _case(f"tutorial:{T07}:fpmac")
  d = _folder(case)
  files = [d / "arch" / "eyeriss_like-float32.yaml",
           *sorted((d / "arch" / "components").glob("*.yaml")),
           d / "prob" / "prob.yaml", d / "mapper" / "mapper.yaml",
           *_reference_files(case)]
  with warnings.catch_warnings():
    warnings.simplefilter("ignore", SpecWarning)
    with pytest.raises(SpecError, match="inter_PE_spatial"):
      jaxloop.load(*files)


# --- 08: a template whose constraint splits by an expression ---------------

_T08_SPLIT = "split: len(spec.problem.instance)"


def _t08_copy(root: Path, split: str) -> Path:
  """top.yaml.jinja and inputs/ copied to ``root``, the PE container's
  ``split`` written as ``split``."""
  src = TUT / T08
  shutil.copy(src / "top.yaml.jinja", root / "top.yaml.jinja")
  shutil.copytree(src / "inputs", root / "inputs")
  arch = root / "inputs" / "arch.yaml"
  arch.chmod(0o644)
  _edited_copy(arch, arch, _T08_SPLIT, split)
  return root / "top.yaml.jinja"


@needs_ref
def test_08_template_reproduces_timeloop_with_split_evaluated(tmp_path):
  """The reference run is top.yaml.jinja with reg_enabled false (no `reg`
  level: the map.yaml and timeloop-mapper.ERT.yaml have none; outputs/
  ERT.yaml and ART.yaml, with `reg`, belong to another run) and the default
  datawidth 8.  With `split: len(spec.problem.instance)` written as the
  value Timeloop's front end gave it (17, the flattened input's), every
  figure matches; maximize_dims (a search hint) is ignored with a warning."""
  case = _case(f"tutorial:{T08}")
  top = _t08_copy(tmp_path, "split: 17")
  assert _mismatches(case, [top], {"reg_enabled": False},
                     warns="maximize_dims") == []


@needs_ref
def test_08_template_as_shipped():
  """As shipped: the constraint's ``split: len(spec.problem.instance)`` is
  evaluated over the problem instance (every figure matches)."""
  case = _case(f"tutorial:{T08}")
  with warnings.catch_warnings():
    warnings.simplefilter("ignore", SpecWarning)
    wl = jaxloop.load(TUT / T08 / "top.yaml.jinja", *_reference_files(case),
                      variables={"reg_enabled": False})
  expected = json.loads((REFERENCE / case["dir"] / case["expected"])
                        .read_text())
  assert compare(wl.report(wl.evaluate()), expected) == []
