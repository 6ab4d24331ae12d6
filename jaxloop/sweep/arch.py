"""One sweep point's architecture: template variables and component
attributes applied to the input files, loaded as a :class:`Workload`.

Attribute edits are made on the merged YAML document before it is parsed
(:func:`jaxloop.spec.load_spec`'s ``edit``), so everything derived from
them (capacities, block sizes, instances, the estimator's energies and
areas) follows as if the files had been written that way.
"""
from __future__ import annotations

import functools
import os
import re
from pathlib import Path
from typing import Optional, Sequence

from jaxloop.api import Workload
from jaxloop.errors import SpecError, spec_warnings
from jaxloop.precision import exact
from jaxloop.spec.loader import load_spec
from jaxloop.spec.templates import SUFFIXES
from jaxloop.structure import build_params, build_structure

_MESH = ("meshX", "meshY")
_RANGE = re.compile(r"\[[^\]]*\]$")


def split_point(point: dict) -> tuple[dict, dict]:
  """``(template variables, document edits)`` of a point: names without a
  dot are template variables, dotted names edit the document."""
  variables = {k: v for k, v in point.items() if "." not in k}
  edits = {k: v for k, v in point.items() if "." in k}
  return variables, edits


def _components(node, found: list) -> None:
  """Every dict with a ``name`` under ``node`` (depth first)."""
  if isinstance(node, dict):
    if isinstance(node.get("name"), str):
      found.append(node)
    for v in node.values():
      _components(v, found)
  elif isinstance(node, list):
    for v in node:
      _components(v, found)


def _base_name(name: str) -> str:
  return _RANGE.sub("", name.strip())


def apply_edits(edits: dict, doc: dict) -> None:
  """Sets ``COMPONENT.ATTRIBUTE`` and ``variables.NAME`` values in the
  merged document ``doc`` (in place).  ``meshX``/``meshY`` go to the node's
  ``spatial:`` (v0.4 nodes) unless it keeps them among its attributes.

  Raises:
    SpecError: a component the architecture does not have.
  """
  for name, value in edits.items():
    target, _, attr = name.rpartition(".")
    if target == "variables":
      doc.setdefault("variables", {})[attr] = value
      continue
    found: list = []
    _components(doc.get("architecture"), found)
    hits = [n for n in found if _base_name(n["name"]) == target]
    if not hits:
      names = sorted({_base_name(n["name"]) for n in found})
      raise SpecError(
          f"sweep axis '{name}': the architecture has no component or "
          f"container '{target}'", path=name,
          hint="Components: " + ", ".join(names))
    for node in hits:
      attrs = node.get("attributes")
      if attr in _MESH and not (isinstance(attrs, dict) and attr in attrs):
        node.setdefault("spatial", {})[attr] = value
      else:
        if not isinstance(attrs, dict):
          attrs = node["attributes"] = {}
        attrs[attr] = value


def is_template_set(files: Sequence[str]) -> bool:
  """Whether the architecture files are a Jinja template set (the problem
  is then the template variable ``problem``)."""
  return any(str(f).endswith(SUFFIXES) for f in files)


def layer_inputs(arch_files: Sequence[str], layer: Optional[str],
                 variables: dict) -> tuple[list[str], dict]:
  """Files and variables that load ``layer`` (a problem file) on the
  architecture: the template variable ``problem`` for a template set, else
  one more file."""
  files = [os.fspath(f) for f in arch_files]
  variables = dict(variables)
  if layer is not None:
    if is_template_set(files):
      variables["problem"] = str(Path(layer).resolve())
    else:
      files.append(os.fspath(layer))
  return files, variables


@exact
def point_workload(arch_files: Sequence[str], layer: Optional[str],
                   point: dict, strict: bool = False) -> Workload:
  """The Workload of ``layer`` on the architecture of ``point``.

  Raises:
    SpecError: bad files, or an axis naming what the files do not have.
  """
  variables, edits = split_point(point)
  files, variables = layer_inputs(arch_files, layer, variables)
  with spec_warnings(strict):
    spec = load_spec(*files, variables=variables,
                     edit=functools.partial(apply_edits, edits))
    structure = build_structure(spec)
    params = build_params(spec, structure)
  return Workload(spec=spec, structure=structure, params=params)
