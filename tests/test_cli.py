"""The command line: outputs, exit codes, no tracebacks on bad input."""
import json
from pathlib import Path

import pytest

from jaxloop.cli import main

EXAMPLE = Path(__file__).resolve().parents[1] / "jaxloop" / "specs" / "example"


def test_model_writes_stats(tmp_path, capsys):
  files = sorted(str(p) for p in EXAMPLE.glob("*.yaml"))
  assert main(["model", *files, "-o", str(tmp_path)]) == 0
  d = json.loads((tmp_path / "stats.json").read_text())
  assert d["summary"]["computes"] == 16 * 32 * 3 * 3 * 14 * 14
  assert d["levels"][0]["index"] == 0
  assert "Summary Stats" in (tmp_path / "stats.txt").read_text()
  assert "cycles" in capsys.readouterr().out


@pytest.mark.parametrize("mutation,needle", [
    (("map.yaml", "factors: C4 M1", "factors: K4 M1"), "is not a problem dimension"),
    (("map.yaml", "target: DRAM", "target: DRAMM"), "Did you mean"),
    (("map.yaml", "C1 M2 R1", "C1 M3 R1"), "multiply to"),
    (("problem.yaml", "P: 14, Q: 14}", "P: 14, Q: 14"), "YAML"),
    (("ERT.yaml", "RegisterFile[1..16]", "Regfile[1..16]"), "RegisterFile"),
])
def test_bad_input_exits_2_with_file_and_key(tmp_path, capsys, mutation, needle):
  name, old, new = mutation
  for p in EXAMPLE.glob("*.yaml"):
    text = p.read_text()
    if p.name == name:
      assert old in text
      text = text.replace(old, new, 1)
    (tmp_path / p.name).write_text(text)
  files = sorted(str(p) for p in tmp_path.glob("*.yaml"))
  code = main(["model", *files, "-o", str(tmp_path / "out")])
  err = capsys.readouterr().err
  assert code == 2, err
  assert needle in err
  assert "Traceback" not in err
  assert ".yaml" in err


def test_missing_file_exits_2(tmp_path, capsys):
  assert main(["model", str(tmp_path / "nope.yaml"), "-o",
               str(tmp_path)]) == 2
  assert "nope.yaml" in capsys.readouterr().err
