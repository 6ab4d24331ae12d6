"""One :class:`~jaxloop.Workload` per layer: the architecture files with
each layer's problem.

ARCH_FILES are what ``jaxloop map`` takes without the problem: plain
architecture / constraints / mapper / ERT / ART files, to which each layer's
problem file is added; or templates such as Timeloop's
``example_designs/top.yaml.jinja2``, rendered with the ``--var`` variables
and ``problem`` set to the layer's file (the variable that template reads).

The architecture files are rendered once.  The energy and area tables and
the ``ArchParams`` do not depend on the problem: they are built once (by
the built-in estimator when the files hold no ERT) and given to every
later layer, so each further layer costs the parsing of its problem.
"""
from __future__ import annotations

import dataclasses
import os
import tempfile
from pathlib import Path
from typing import Optional, Sequence

import yaml

from jaxloop.api import Workload, workload_of
from jaxloop.errors import SpecError, spec_warnings
from jaxloop.network.layers import Layer
from jaxloop.precision import exact
from jaxloop.spec import yamlio
from jaxloop.spec.loader import render_documents, spec_from_document
from jaxloop.spec.templates import is_template
from jaxloop.outputs import used_tables
from jaxloop.structure import _check_attributes as check_attributes
from jaxloop.structure import build_structure


def uses_template(arch_files: Sequence[str | os.PathLike]) -> bool:
  """Whether any of ``arch_files`` is a template (then the layer's problem
  goes in as the ``problem`` variable)."""
  for f in arch_files:
    p = Path(f)
    if not p.is_file():
      raise SpecError(f"architecture file '{f}' does not exist",
                      path="ARCH_FILES", where=str(f),
                      hint="Check the path.")
    if is_template(str(p), p.read_text()):
      return True
  return False


@exact
def load_workloads(arch_files: Sequence[str | os.PathLike],
                   layers: Sequence[Layer],
                   variables: Optional[dict] = None,
                   strict: bool = False) -> list[Workload]:
  """``[len(layers)]`` workloads, in order.

  The architecture files are rendered and merged once; each layer's
  problem file is rendered on its own and takes the place of the
  ``problem:`` section (with a template, the section the template
  includes from its ``problem`` variable; with plain files, every section
  of the layer file, merged as ``jaxloop map ARCH... LAYER`` merges them).

  Raises:
    SpecError: bad input in the architecture files or a layer's problem
      (the message names the layer's file).
  """
  if not layers:
    return []
  template = uses_template(arch_files)
  tables = None
  out = []
  with tempfile.TemporaryDirectory(prefix="jaxloop-net-") as tmp, \
      spec_warnings(strict):
    paths = [_problem_file(layer, Path(tmp)) for layer in layers]
    values = dict(variables or {})
    if template:
      values["problem"] = os.path.abspath(paths[0])
    arch_doc, names = render_documents(
        [os.fspath(f) for f in arch_files], values or None,
        needs=("architecture", "problem") if template else
        ("architecture",))
    first = None
    for path in paths:
      doc = _with_layer(arch_doc, path, values, template)
      wl = _workload(doc, tuple(names) + (path,), first)
      first = first or wl
      out.append(wl)
  return out


def _with_layer(arch_doc, path: str, variables: dict, template: bool):
  """The merged document of the architecture and the layer file at
  ``path`` (see :func:`load_workloads`)."""
  layer = yamlio.load_yaml_file(path, session=yamlio.new_session(variables))
  if "problem" not in layer:
    raise SpecError("the layer file has no 'problem:' section",
                    path="problem", where=path,
                    hint="Pass Timeloop problem files as layers.")
  if template:
    layer = {"problem": layer["problem"]}
  return yamlio.merge_documents([arch_doc, layer])


def _problem_file(layer: Layer, tmp: Path) -> str:
  """The layer's problem file (written to ``tmp`` for in-memory ones)."""
  if layer.problem is None:
    return str(layer.path)
  path = tmp / f"{layer.name}.yaml"
  path.write_text(yaml.safe_dump({"problem": layer.problem},
                                 sort_keys=False))
  return str(path)


def _workload(doc, names: tuple, first: Optional[Workload]) -> Workload:
  """The workload of a merged document (as :func:`jaxloop.load` builds it);
  after the ``first`` layer, with its energy and area tables and its
  ``ArchParams`` (they depend on the architecture only)."""
  if first is not None:
    spec = spec_from_document(doc, names, ert=first.spec.ert,
                              art=first.spec.art)
    return Workload(spec=spec, structure=build_structure(spec),
                    params=first.params)
  spec = spec_from_document(doc, names)
  if spec.ert is None:
    # Estimated tables, once: the checks of the estimator's attributes
    # first (build_params only makes them without an ERT).
    check_attributes(spec)
    ert, art = used_tables(spec)
    spec = dataclasses.replace(spec, ert=ert, art=art)
  return workload_of(spec)


def with_kind(wl: Workload, kind) -> Workload:
  """``wl`` whose evaluators compile for ``kind`` (see
  :mod:`jaxloop.network.kinds`)."""
  return dataclasses.replace(wl, kind=kind)
