"""Readers for Timeloop's YAML inputs (no jax here).

Public entry points:

* :func:`load_spec` -- files (architecture, problem, mapping, constraints,
  mapper, ERT/ART) into one validated :class:`~jaxloop.spec.types.Spec`;
* :func:`load_architecture` -- an architecture without a problem (for the
  energy and area tables);
* :func:`load_yaml_files` -- the merged YAML documents, with ``file:line``
  locations, for callers that want the raw data.

Each takes ``variables`` for the Jinja templates among the files.
"""
from jaxloop.spec.loader import load_architecture, load_spec
from jaxloop.spec.yamlio import load_yaml_files

__all__ = ["load_architecture", "load_spec", "load_yaml_files"]
