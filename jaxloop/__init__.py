"""jaxloop: Timeloop's accelerator model and mappers in JAX.

Importing jaxloop turns on ``jax_enable_x64``: access counts are exact
integers and MAC counts pass 2**24.
"""
import jax as _jax

_jax.config.update("jax_enable_x64", True)

from jaxloop.errors import SpecError, UnsupportedFeatureError  # noqa: E402
from jaxloop.types import ArchParams, Mapping, Stats  # noqa: E402
from jaxloop.structure import Structure, build_structure, build_params  # noqa: E402
from jaxloop.mapping import mapping_from_directives, directives_from_mapping, stack  # noqa: E402

__all__ = [
    "SpecError", "UnsupportedFeatureError", "ArchParams", "Mapping", "Stats",
    "Structure", "build_structure", "build_params", "mapping_from_directives",
    "directives_from_mapping", "stack",
]
