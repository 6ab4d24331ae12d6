"""Shared test fixtures: the reference cases and strict jax settings."""
import json
import os
from pathlib import Path

import jax
import pytest

import jaxloop  # noqa: F401  (turns on x64)

jax.config.update("jax_numpy_rank_promotion", "raise")

REFERENCE = Path(os.environ.get(
    "JAXLOOP_REFERENCE",
    Path(__file__).resolve().parents[1].parent / "shared" / "timeloop-reference"))


def reference_cases():
  if not (REFERENCE / "cases.json").is_file():
    return []
  return json.loads((REFERENCE / "cases.json").read_text())


@pytest.fixture
def reference():
  if not (REFERENCE / "cases.json").is_file():
    pytest.skip(f"Timeloop reference cases not found at {REFERENCE} "
                "(set JAXLOOP_REFERENCE)")
  return REFERENCE
