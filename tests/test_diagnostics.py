"""Invalid mappings and silent fallbacks, reported (`jaxloop model` and the
library): a mapping Timeloop refuses exits 2 naming the level, data space,
tile size and capacity (``--allow-invalid`` writes it with a warning);
misspelt attributes, compound classes estimated without their definition,
ERT entries matched under another name and case-insensitive keys are one
``jaxloop: warning:`` line each (``--strict``: exit 2), never a Python
warning dump."""
import json
import re
import warnings
from pathlib import Path

import numpy as np
import pytest

import jaxloop
from jaxloop import validity
from jaxloop.cli import main
from jaxloop.errors import InvalidMappingError, SpecError, SpecWarning

EXAMPLE = Path(__file__).resolve().parents[1] / "jaxloop" / "specs" / "example"
FILES = ("arch.yaml", "problem.yaml", "map.yaml", "ERT.yaml")


def _inputs(tmp_path: Path, *edits, files=FILES) -> list[str]:
  """The bundled example's files in ``tmp_path``, each edit
  ``(file, old, new)`` applied (the old text must be there)."""
  for name in set(FILES) | {f for f, _, _ in edits}:
    text = (EXAMPLE / name).read_text()
    for f, old, new in edits:
      if f == name:
        assert old in text, (name, old)
        text = text.replace(old, new)
    (tmp_path / name).write_text(text)
  return [str(tmp_path / f) for f in files]


def _cli(argv, capsys) -> tuple[int, str, str]:
  code = main([str(a) for a in argv])
  out = capsys.readouterr()
  return code, out.out, out.err


def _assert_clean(err: str) -> None:
  """No Python warning dump or traceback, one line per warning."""
  assert "UserWarning" not in err and "SpecWarning" not in err, err
  assert "Traceback" not in err and "warnings.warn" not in err, err
  for line in err.splitlines():
    assert line.startswith(("jaxloop: ", "  ")), err


def _warnings(err: str) -> list[str]:
  return [l for l in err.splitlines() if l.startswith("jaxloop: warning: ")]


SMALL_BUFFER = ("arch.yaml", "depth: 8192", "depth: 256")
# M8 across the 4 PE columns (and M1 at DRAM to keep the product 32).
WIDE_SPATIAL = [("map.yaml", "factors: C1 M2 R1", "factors: C1 M1 R1"),
                ("map.yaml", "factors: C4 M4 R1", "factors: C4 M8 R1")]
TYPO = ("arch.yaml", "depth: 8192", "detph: 8192")
SMART = ("arch.yaml", "class: SRAM", "class: smartbuffer_SRAM")
RENAMED_ERT = ("ERT.yaml", "system_top_level.", "PE_top_level.")
FOLDED_KEY = ("problem.yaml", "instance: {C: 16", "instance: {hstride: 1, C: 16")


# --------------------------------------------------------- invalid mappings

def test_overflow_exits_2_naming_level_dataspaces_tile_and_capacity(
    tmp_path, capsys):
  files = _inputs(tmp_path, SMALL_BUFFER)
  code, _, err = _cli(["model", *files, "-o", tmp_path / "out"], capsys)
  assert code == 2, err
  assert not (tmp_path / "out").exists()
  assert err.count("jaxloop: error:") == 1
  first = err.splitlines()[0]
  assert first.startswith("jaxloop: error: mapping (")
  assert "map.yaml:" in first
  # 9536 = 2304 + 4096 + 3136 words per instance; 256 rows x 8 words.
  for fragment in ("level 'GlobalBuffer'", "mapped tile size 9536 words",
                   "Weights 2304", "Inputs 4096", "Outputs 3136",
                   "exceeds buffer capacity 2048 words", "--allow-invalid"):
    assert fragment in err, (fragment, err)
  _assert_clean(err)


def test_allow_invalid_writes_stats_with_the_message_as_warning(
    tmp_path, capsys):
  files = _inputs(tmp_path, SMALL_BUFFER)
  code, out, err = _cli(["model", *files, "-o", tmp_path / "out",
                         "--allow-invalid"], capsys)
  assert code == 0, err
  d = json.loads((tmp_path / "out" / "stats.json").read_text())
  assert d["summary"]["valid"] is False
  assert "(INVALID mapping)" in out
  (line,) = _warnings(err)
  assert "level 'GlobalBuffer': mapped tile size 9536 words" in line
  assert "exceeds buffer capacity 2048 words" in line
  _assert_clean(err)


def test_fanout_overflow_exits_2_naming_level_and_limit(tmp_path, capsys):
  files = _inputs(tmp_path, *WIDE_SPATIAL)
  code, _, err = _cli(["model", *files, "-o", tmp_path / "out"], capsys)
  assert code == 2, err
  assert "fan-out of 'inter_PE_spatial'" in err and "4 x 4" in err, err
  assert "found 8 x 4" in err
  _assert_clean(err)
  # --allow-invalid evaluates it and names the expansion and its limit.
  code, _, err = _cli(["model", *files, "-o", tmp_path / "out",
                       "--allow-invalid"], capsys)
  assert code == 0, err
  (line,) = _warnings(err)
  assert ("level 'inter_PE_spatial': mapped X expansion 8 (M8) exceeds its "
          "X fan-out 4") in line


def test_violations_from_python(tmp_path):
  wl = jaxloop.load(*_inputs(tmp_path, SMALL_BUFFER))
  found = validity.violations(wl)
  assert found == [
      "level 'GlobalBuffer': mapped tile size 9536 words (Weights 2304, "
      "Inputs 4096, Outputs 3136) exceeds buffer capacity 2048 words per "
      "instance"]
  m = wl.mapping()
  stats = wl.evaluate(m)
  assert not stats.valid and not stats.capacity_ok
  # Same answer from the structure and parameters, with or without stats.
  assert validity.violations(wl.structure, wl.params, m, stats) == found
  assert validity.violations(wl.structure, wl.params, m) == found
  with pytest.raises(InvalidMappingError) as e:
    validity.check(wl, where="map.yaml")
  assert e.value.violations == tuple(found)
  assert isinstance(e.value, SpecError)
  # The bundled example's own mapping is valid.
  assert validity.violations(jaxloop.load(*jaxloop.example_files())) == []


def test_violations_name_fanout_and_factor_products(tmp_path):
  wl = jaxloop.load(*_inputs(tmp_path, *WIDE_SPATIAL))
  m = wl.mapping()          # read without the fan-out check
  assert validity.violations(wl, mapping=m) == [
      "level 'inter_PE_spatial': mapped X expansion 8 (M8) exceeds its X "
      "fan-out 4 (4 x 4 children)"]
  ex = jaxloop.load(*jaxloop.example_files())
  m = ex.mapping()
  temporal = np.array(m.temporal)
  gb = ex.structure.level_index("GlobalBuffer")
  temporal[gb, ex.structure.dim_names.index("P")] = 7     # 14 -> 7
  bad = type(m)(temporal, m.spatial_x, m.spatial_y, m.order, m.keep)
  (line,) = validity.violations(ex, mapping=bad)
  assert line.startswith("dimension 'P': factors multiply to 7 "
                         "(GlobalBuffer 7)")
  assert line.endswith("not its bound 14")


def test_min_utilization_violation(tmp_path):
  wl = jaxloop.load(*_inputs(tmp_path, (
      "arch.yaml", "depth: 8192,", "depth: 8192, min_utilization: 0.5,")))
  (line,) = validity.violations(wl)
  assert line == (
      "level 'GlobalBuffer': mapped tile size 9536 words (Weights 2304, "
      "Inputs 4096, Outputs 3136) is less than its constrained minimum "
      "utilization 32768 words (min_utilization 0.5 of 65536)")


# ------------------------------------------------------------- fallbacks

def test_misspelt_attribute_warns_with_did_you_mean(tmp_path, capsys):
  files = _inputs(tmp_path, TYPO)
  code, _, err = _cli(["model", *files, "-o", tmp_path / "out"], capsys)
  assert code == 0, err
  (line,) = _warnings(err)
  for fragment in ("'GlobalBuffer'", "attribute 'detph'", "ignored",
                   "capacity is unbounded", "did you mean 'depth'",
                   "arch.yaml"):
    assert fragment in line, (fragment, line)
  _assert_clean(err)
  with pytest.warns(SpecWarning, match="did you mean 'depth'"):
    jaxloop.load(*files)


def test_compound_class_without_definition_warns(tmp_path, capsys):
  files = _inputs(tmp_path, SMART, files=FILES[:3])     # no ERT: estimated
  code, _, err = _cli(["model", *files, "-o", tmp_path / "out"], capsys)
  assert code == 0, err
  (line,) = _warnings(err)
  for fragment in ("architecture.GlobalBuffer.class", "'GlobalBuffer'",
                   "class 'smartbuffer_SRAM'", "compound_components",
                   "built-in smartbuffer_SRAM", "address adder"):
    assert fragment in line, (fragment, line)
  _assert_clean(err)
  # The class given with its definition: no warning.
  (tmp_path / "components.yaml").write_text("""
compound_components:
  version: 0.4
  classes:
  - name: smartbuffer_SRAM
    attributes: {technology: must_specify, width: must_specify,
                 depth: must_specify}
    subcomponents:
    - {name: storage, class: SRAM, attributes: {width: width, depth: depth}}
    actions:
    - {name: read, subcomponents: [{name: storage, actions: [{name: read}]}]}
    - {name: write, subcomponents: [{name: storage, actions: [{name: write}]}]}
""")
  with warnings.catch_warnings():
    warnings.simplefilter("error")
    jaxloop.load(*files, tmp_path / "components.yaml")


def test_ert_name_mismatch_warns_once_per_difference(tmp_path, capsys):
  files = _inputs(tmp_path, RENAMED_ERT, ("ERT.yaml", "RegisterFile[1..16]",
                                          "RegisterFile[1..4]"))
  code, _, err = _cli(["model", *files, "-o", tmp_path / "out"], capsys)
  assert code == 0, err
  lines = _warnings(err)
  assert len(lines) == 2, err
  top = next(l for l in lines if "'DRAM'" in l)
  assert "ERT and ART entries matched to levels" in top
  assert ("the top-level name ('PE_top_level' there, 'system_top_level' "
          "here)") in top
  assert "'PE_top_level.DRAM[1..1]' used for 'system_top_level.DRAM[1..1]'" \
      in top or "'PE_top_level.GlobalBuffer[1..1]'" in top
  rf = next(l for l in lines if "'RegisterFile'" in l)
  assert "the instance range ([1..4] there, [1..16] here)" in rf
  _assert_clean(err)


def test_case_insensitive_key_is_one_line(tmp_path, capsys):
  files = _inputs(tmp_path, FOLDED_KEY)
  code, _, err = _cli(["model", *files, "-o", tmp_path / "out"], capsys)
  assert code == 0, err
  (line,) = _warnings(err)
  assert re.match(r"jaxloop: warning: problem\.instance\.hstride \(.*"
                  r"problem\.yaml:\d+\): instance key 'hstride'", line), line
  assert "using 'Hstride' (case-insensitive match)" in line
  _assert_clean(err)


@pytest.mark.parametrize("edits,fragment", [
    ((TYPO,), "did you mean 'depth'"),
    ((RENAMED_ERT,), "by component name only"),
    ((FOLDED_KEY,), "case-insensitive match"),
    ((SMALL_BUFFER,), "exceeds buffer capacity 2048 words"),
], ids=["attribute", "ert-name", "case-insensitive", "allow-invalid"])
def test_strict_makes_each_warning_exit_2(tmp_path, capsys, edits, fragment):
  files = _inputs(tmp_path, *edits)
  code, _, err = _cli(["--strict", "model", *files, "-o", tmp_path / "out",
                       "--allow-invalid"], capsys)
  assert code == 2, err
  assert err.startswith("jaxloop: error: ") and fragment in err, err
  assert "strict mode" in err
  assert err.count("jaxloop: error:") == 1 and not _warnings(err)
  assert not (tmp_path / "out").exists()
  _assert_clean(err)


def test_strict_compound_class_exit_2(tmp_path, capsys):
  files = _inputs(tmp_path, SMART, files=FILES[:3])
  code, _, err = _cli(["--strict", "model", *files, "-o", tmp_path / "out"],
                      capsys)
  assert code == 2 and "class 'smartbuffer_SRAM'" in err, err
  code, _, err = _cli(["--strict", "ert", files[0], "-o", tmp_path / "ert"],
                      capsys)
  assert code == 2 and "class 'smartbuffer_SRAM'" in err, err
  _assert_clean(err)


@pytest.mark.parametrize("edit,fragment", [
    (TYPO, "did you mean 'depth'"), (RENAMED_ERT, "by component name only"),
    (FOLDED_KEY, "case-insensitive match")])
def test_load_strict_raises_spec_error(tmp_path, edit, fragment):
  files = _inputs(tmp_path, edit)
  with pytest.raises(SpecError, match=re.escape(fragment)) as e:
    jaxloop.load(*files, strict=True)
  assert "strict mode" in str(e.value)
  with pytest.warns(SpecWarning, match=re.escape(fragment)):
    jaxloop.load(*files)


def test_clean_inputs_give_no_warnings(tmp_path, capsys):
  code, _, err = _cli(["--strict", "model", *_inputs(tmp_path), "-o",
                       tmp_path / "out"], capsys)
  assert code == 0 and err == "", err
  with warnings.catch_warnings():
    warnings.simplefilter("error")
    jaxloop.load(*jaxloop.example_files(), strict=True)


def test_reference_cases_load_without_warnings(reference):
  from support import reference_cases
  from jaxloop.validate import case_files
  for case in reference_cases():
    with warnings.catch_warnings():
      warnings.simplefilter("error")
      jaxloop.load(*case_files(reference, case), strict=True)
