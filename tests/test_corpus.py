"""Every malformed input in tests/corpus/bad ends in one clear error.

Each case folder holds the broken file(s) and an ``expect.yaml`` (see
``tests/corpus/README.md``); files not in the folder come from the bundled
example, or from ``tests/corpus/base/<base>`` where the case names a base.
"""
from __future__ import annotations

import sys
import warnings
from pathlib import Path

import pytest
import yaml

from jaxloop import api
from jaxloop.cli import main
from jaxloop.errors import SpecError, UnsupportedFeatureError

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "tests" / "corpus" / "bad"
BASES = ROOT / "tests" / "corpus" / "base"
EXAMPLE = ROOT / "jaxloop" / "specs" / "example"
CASES = sorted(p.parent for p in CORPUS.glob("*/expect.yaml"))


def _expect(case: Path) -> dict:
  return yaml.safe_load((case / "expect.yaml").read_text())


def _files(case: Path, expect: dict, names: list | None = None) -> list[str]:
  """The case's inputs: its own broken files, the rest from its base."""
  base = BASES / expect["base"] if "base" in expect else EXAMPLE
  return [str(case / n if (case / n).exists() else base / n)
          for n in (expect["files"] if names is None else names)]


def _cli(argv: list, capsys) -> tuple[int, str]:
  """Exit code and stderr of the CLI."""
  with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    code = main(argv)
  return code, capsys.readouterr().err


def _assert_message(expect: dict, text: str):
  for fragment in expect["message"]:
    assert fragment in text, (fragment, text)
  if expect.get("hint"):
    assert expect["hint"] in text, (expect["hint"], text)


def test_corpus_is_large_enough():
  assert len(CASES) >= 125


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_gives_one_clear_error(case, tmp_path, capsys):
  expect = _expect(case)
  code, err = _cli(["model", *_files(case, expect), "-o",
                    str(tmp_path / "out")], capsys)
  assert code == 2, err
  assert "Traceback" not in err
  assert "internal error" not in err
  assert err.count("jaxloop: error:") == 1, err
  assert not (tmp_path / "out").exists(), "no output on bad input"
  first = err.splitlines()[0]
  if expect.get("where"):
    # file (and line): each file named in `where` appears in the head line
    for part in expect["where"].split(", "):
      assert part in first, (part, err)
    assert f"{expect['path']} (" in first, (expect["path"], err)
  else:
    assert first.startswith(f"jaxloop: error: {expect['path']}: "), err
  _assert_message(expect, err)
  unsupported = "unsupported Timeloop feature" in err
  assert unsupported == (expect["error"] == "UnsupportedFeatureError"), err


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_raises_expected_class(case):
  """The Python API (``api.load``, then the mapping the CLI evaluates)
  raises exactly the class named in ``error``, with the same message."""
  expect = _expect(case)
  with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    with pytest.raises((SpecError, UnsupportedFeatureError)) as info:
      api.load(*_files(case, expect)).mapping(check_fanout=True)
  assert type(info.value).__name__ == expect["error"], info.value
  _assert_message(expect, str(info.value))


# `jaxloop map` reads the same files (without the mapping): every case whose
# broken file is not the mapping, and that has other files, must fail the
# same way.
MAP_CASES = [c for c in CASES
             if not (c / "map.yaml").exists() and c.name != "missing_mapping"
             and "map.yaml" in _expect(c)["files"]
             and len(_expect(c)["files"]) > 1]


@pytest.mark.parametrize("case", MAP_CASES, ids=[c.name for c in MAP_CASES])
def test_map_command_bad_input_exits_2(case, tmp_path, capsys):
  expect = _expect(case)
  names = [n for n in expect["files"] if n != "map.yaml"]
  code, err = _cli(["map", *_files(case, expect, names), "-o",
                    str(tmp_path / "out"), "--budget", "10", "--search",
                    "random"], capsys)
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
