"""jaxloop: Timeloop's accelerator model and mappers in JAX.

Importing jaxloop turns on ``jax_enable_x64``: access counts are exact
integers and MAC counts pass 2**24.

It also turns on JAX's persistent compilation cache (compiled models are
reused across runs: a second ``jaxloop map`` of the same architecture and
layer skips its 5-30 s of XLA compilation).  The cache lives in
``$JAXLOOP_CACHE_DIR`` (default ``~/.cache/jaxloop/xla``); set it to ``off``
to disable it.  A cache directory the user set in JAX's own config wins.
"""
import os as _os

import jax as _jax

_jax.config.update("jax_enable_x64", True)


def _enable_compilation_cache() -> None:
  if _jax.config.jax_compilation_cache_dir:
    return
  path = _os.environ.get("JAXLOOP_CACHE_DIR", _os.path.join(
      _os.path.expanduser("~"), ".cache", "jaxloop", "xla"))
  if path.lower() in ("", "off", "0", "none"):
    return
  try:
    _os.makedirs(path, exist_ok=True)
  except OSError:
    return   # read-only home: run without the cache
  if _os.access(path, _os.W_OK):
    _jax.config.update("jax_compilation_cache_dir", path)
    _jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)


_enable_compilation_cache()

from jaxloop.errors import SpecError, UnsupportedFeatureError  # noqa: E402
from jaxloop.types import ArchParams, Mapping, Stats  # noqa: E402
from jaxloop.structure import Structure, build_structure, build_params  # noqa: E402
from jaxloop.mapping import mapping_from_directives, directives_from_mapping, stack  # noqa: E402

__all__ = [
    "SpecError", "UnsupportedFeatureError", "ArchParams", "Mapping", "Stats",
    "Structure", "build_structure", "build_params", "mapping_from_directives",
    "directives_from_mapping", "stack",
]
