"""The command line on good input: outputs and exit code 0.

Bad input (exit code 2, one message naming file and key, no traceback) is
checked case by case in tests/test_corpus.py over tests/corpus/bad.
"""
import json
from pathlib import Path

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
