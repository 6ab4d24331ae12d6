"""Every malformed input in tests/corpus/bad ends in one clear error.

Each case folder holds the broken file(s) and an ``expect.yaml`` (see
``tests/corpus/bad/README.md``); files not in the folder come from the
bundled example.
"""
from __future__ import annotations

import sys
import warnings
from pathlib import Path

import pytest
import yaml

from jaxloop.cli import main

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "tests" / "corpus" / "bad"
EXAMPLE = ROOT / "specs" / "example"
CASES = sorted(p.parent for p in CORPUS.glob("*/expect.yaml"))


def _files(case: Path, names: list) -> list[str]:
  return [str(case / n if (case / n).exists() else EXAMPLE / n)
          for n in names]


def test_corpus_is_large_enough():
  assert len(CASES) >= 50


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_gives_one_clear_error(case, tmp_path, capsys):
  expect = yaml.safe_load((case / "expect.yaml").read_text())
  with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    code = main(["model", *_files(case, expect["files"]), "-o",
                 str(tmp_path / "out")])
  captured = capsys.readouterr()
  err = captured.err
  assert code == 2, err or captured.out
  assert "Traceback" not in err
  assert "internal error" not in err
  assert err.count("jaxloop: error:") == 1, err
  assert not (tmp_path / "out").exists(), "no output on bad input"
  first = err.splitlines()[0]
  # file (and line): each file named in `where` appears in the head line
  for part in expect["where"].split(", "):
    assert part in first, (part, err)
  assert f"{expect['path']} (" in first, (expect["path"], err)
  for fragment in expect["message"]:
    assert fragment in err, (fragment, err)
  if expect.get("hint"):
    assert expect["hint"] in err, (expect["hint"], err)
  unsupported = "unsupported Timeloop feature" in err
  assert unsupported == (expect["error"] == "UnsupportedFeatureError"), err


# `jaxloop map` reads the same files (without the mapping): every case whose
# broken file is not the mapping must fail the same way.
MAP_CASES = [c for c in CASES
             if not (c / "map.yaml").exists() and c.name != "missing_mapping"
             and "map.yaml" in yaml.safe_load(
                 (c / "expect.yaml").read_text())["files"]]


@pytest.mark.parametrize("case", MAP_CASES, ids=[c.name for c in MAP_CASES])
def test_map_command_bad_input_exits_2(case, tmp_path, capsys):
  expect = yaml.safe_load((case / "expect.yaml").read_text())
  names = [n for n in expect["files"] if n != "map.yaml"]
  with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    code = main(["map", *_files(case, names), "-o", str(tmp_path / "out"),
                 "--budget", "10", "--search", "random"])
  err = capsys.readouterr().err
  assert code == 2, err
  assert "Traceback" not in err
  assert err.count("jaxloop: error:") == 1, err
  for fragment in expect["message"]:
    assert fragment in err, (fragment, err)


def test_map_command_success_exits_0(tmp_path, capsys):
  files = [str(EXAMPLE / n) for n in ("arch.yaml", "problem.yaml",
                                      "ERT.yaml")]
  code = main(["map", *files, "-o", str(tmp_path / "out"), "--budget", "50",
               "--search", "random", "--seed", "1"])
  out = capsys.readouterr()
  assert code == 0, out.err
  assert (tmp_path / "out" / "map.yaml").is_file()
  assert (tmp_path / "out" / "stats.json").is_file()


def _fuzz_module():
  import importlib.util
  path = ROOT / "experiments" / "fuzz_spec.py"
  spec = importlib.util.spec_from_file_location("fuzz_spec", path)
  module = importlib.util.module_from_spec(spec)
  sys.modules["fuzz_spec"] = module  # dataclasses look the module up
  spec.loader.exec_module(module)
  return module


@pytest.mark.slow
def test_fuzzed_inputs_never_crash():
  """200 seeded mutations of the reference inputs and the example: each
  loads (spec, structure, parameters, mapping arrays) or ends in SpecError /
  UnsupportedFeatureError.  (``experiments/fuzz_spec.py --evaluate`` also
  runs the model; that compiles per new structure, too slow here.)"""
  res = _fuzz_module().fuzz(seconds=float("inf"), seed=7, max_runs=200)
  assert not res["bugs"], "\n\n".join(f"{d}\n{t}" for d, t in res["bugs"][:5])
  assert res["runs"] == 200
  assert res["counts"]["SpecError"] > 0 and res["counts"]["ok"] > 0
