"""Helpers shared by the tests (not a test module): the reference cases and
random mappings."""
import json
import os
from pathlib import Path

import numpy as np

from jaxloop import api, mapspace

REFERENCE = Path(os.environ.get(
    "JAXLOOP_REFERENCE",
    Path(__file__).resolve().parents[1].parent / "shared" / "timeloop-reference"))


def reference_cases():
  """The entries of ``cases.json`` ([] when the reference is absent)."""
  if not (REFERENCE / "cases.json").is_file():
    return []
  return json.loads((REFERENCE / "cases.json").read_text())


def random_mappings(structure, n, seed=0):
  """n random perfect factorizations, loop orders and bypass choices.

  The outermost level is favoured so that small buffers are not overfilled.
  """
  return mapspace.random_mappings(structure, n, np.random.default_rng(seed),
                                  outer_weight=6.0)


# The bundled example's arch, problem and ERT files (its map.yaml left out).
EXAMPLE_FILES = [f for f in api.example_files() if not f.endswith("map.yaml")]
