"""Test settings: strict rank promotion, 64-bit types for the tests that
call the traceable model directly (the public entry points scope 64-bit
themselves: ``test_api.py`` checks that in a clean subprocess), and JAX's
persistent compilation cache off (the suite writes nothing outside its
temporary directories)."""
import os

import jax
import pytest

from support import REFERENCE

os.environ["JAXLOOP_CACHE_DIR"] = "off"      # for CLI subprocesses
jax.config.update("jax_numpy_rank_promotion", "raise")
jax.config.update("jax_enable_x64", True)


def pytest_configure(config):
  config.addinivalue_line(
      "markers", "slow: heavy tests (run by CI; deselect with -m 'not slow')")


@pytest.fixture
def reference():
  if not (REFERENCE / "cases.json").is_file():
    pytest.skip(f"Timeloop reference cases not found at {REFERENCE} "
                "(set JAXLOOP_REFERENCE)")
  return REFERENCE


@pytest.fixture(scope="module")
def example():
  """The bundled example (arch, problem, ERT; its map.yaml left out),
  loaded once per test module."""
  from jaxloop import api
  from support import EXAMPLE_FILES
  return api.load(*EXAMPLE_FILES)
