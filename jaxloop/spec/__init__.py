"""Readers for Timeloop's YAML inputs (no jax here).

Public entry points:

* :func:`load_spec` -- files (architecture, problem, mapping, constraints,
  mapper, ERT/ART) into one validated :class:`~jaxloop.spec.types.Spec`;
* :func:`load_yaml_files` -- the merged YAML documents, with ``file:line``
  locations, for callers that want the raw data.
"""
from jaxloop.spec.loader import load_spec
from jaxloop.spec.yamlio import load_yaml_files

__all__ = ["load_spec", "load_yaml_files"]
