"""Load Timeloop inputs into a :class:`Workload`; evaluate its mappings."""
from __future__ import annotations

import dataclasses
import functools
import os
from pathlib import Path
from typing import Optional

import jax
import numpy as np

from jaxloop import mapping as mapping_lib
from jaxloop.errors import SpecError, spec_warnings
from jaxloop.evaluator import evaluator
from jaxloop.precision import exact
from jaxloop.report import stats_dict, stats_text
from jaxloop.spec import load_spec
from jaxloop.spec.loader import explain_v03
from jaxloop.spec.types import Spec
from jaxloop.structure import Structure, build_params, build_structure
from jaxloop.types import ArchParams, Mapping, Stats


@dataclasses.dataclass(frozen=True, eq=False)
class Workload:
  """An (architecture, problem) pair read from Timeloop files.

  Attributes:
    spec: everything read from the files (frozen).
    structure: the static structure: hashable, the compiled programs' key.
    params: numbers the model reads as data (ERT/ART energies and areas,
      capacities, bandwidths): vary them without recompiling.
    mapspace: the constrained mapspace (built on first use).
    kind: None, or the structure of a layer kind this problem belongs to
      (:mod:`jaxloop.network.kinds`): evaluators compile for it and take
      the problem's bounds as data, so layers of one kind share programs.
  """
  spec: Spec
  structure: Structure
  params: ArchParams
  kind: Optional[Structure] = None

  @functools.cached_property
  def mapspace(self):
    from jaxloop.mapspace import Mapspace
    return Mapspace.from_spec(self.spec, self.structure)

  @property
  def sources(self) -> str:
    return ", ".join(self.spec.sources)

  def mapping(self, check_fanout: bool = False) -> Mapping:
    """The mapping given in the input files (leaves ``[L, D]``/``[L, S]``).

    Args:
      check_fanout: refuse spatial factors beyond a level's fan-out, as
        ``timeloop-model`` does (otherwise the mapping is reported invalid).
    """
    if not self.spec.mapping:
      raise SpecError(
          "the input files contain no mapping", path="mapping",
          where=self.sources,
          hint="Add a map.yaml (for mapper outputs: timeloop-mapper.map.yaml)"
          ", or run `jaxloop map` to search for one.")
    return mapping_lib.mapping_from_directives(
        self.structure, self.spec.mapping, self.sources,
        check_fanout=check_fanout)

  def evaluate(self, mapping: Optional[Mapping] = None) -> Stats:
    """Numpy statistics of one mapping (default: the one in the files) or
    of a batch (leaves ``[B, L, D]`` in, ``[B, ...]`` out)."""
    m = self.mapping() if mapping is None else mapping
    return jax.tree.map(np.asarray, evaluator(self)(m))

  def report(self, stats: Stats) -> dict:
    """One mapping's statistics as the dict written to ``stats.json``."""
    return stats_dict(self.structure, stats)

  def write(self, stats: Stats, outdir: str | os.PathLike,
            title: str = "", mapping: Optional[Mapping] = None) -> dict:
    """Writes one mapping's results to ``outdir`` (created) as Timeloop
    does, plus the inputs to re-run it; returns the ``stats.json`` dict.

    Files: ``stats.json`` (the layout of the reference ``expected.json``),
    ``stats.txt`` (Timeloop's stats.txt), ``map.txt`` (the loop nest as
    Timeloop prints it), ``map.yaml`` (the mapping as Timeloop directives),
    ``parsed-processed-input.yaml`` (the flattened architecture, problem,
    constraints and mapper section Timeloop's C++ reads) and ``ERT.yaml`` /
    ``ART.yaml`` (the energy and area tables used).  ``timeloop-model
    parsed-processed-input.yaml ERT.yaml ART.yaml map.yaml`` evaluates the
    same mapping, and :func:`load` of those four files reads it back.

    Args:
      stats: the mapping's statistics (one mapping).
      outdir: the folder.
      title: first line of ``stats.txt``.
      mapping: the mapping evaluated (default: the one in the files).  When
        it is the files' mapping, the outputs keep its spatial loop order.
    """
    import json
    from jaxloop import outputs
    files_mapping = self.mapping() if self.spec.mapping else None
    if mapping is None:
      mapping = files_mapping
    if mapping is None:
      raise SpecError("no mapping to write", path="mapping",
                      where=self.sources,
                      hint="Pass the mapping the stats were evaluated for.")
    mapping = jax.tree.map(np.asarray, mapping)
    order = None
    if files_mapping is not None and all(
        np.array_equal(np.asarray(a), np.asarray(b)) for a, b in
        zip(jax.tree.leaves(files_mapping), jax.tree.leaves(mapping))):
      order = outputs.spatial_orders(self.spec, self.structure)
    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    d = self.report(stats)
    (out / "stats.json").write_text(json.dumps(d, indent=1))
    (out / "stats.txt").write_text(stats_text(
        self.structure, stats, title, spec=self.spec, params=self.params,
        mapping=mapping, spatial_order=order))
    outputs.write_timeloop_files(self.spec, self.structure, stats, mapping,
                                 out, order)
    return d


@exact
def load(*paths: str | os.PathLike, strict: bool = False,
         variables: Optional[dict] = None) -> Workload:
  """Reads Timeloop input files (merged by top-level key) into a Workload.

  Accepts the flattened ``parsed-processed-input.yaml`` or v0.4 specs
  (architecture, problem, mapping, constraints, mapper, ERT/ART tables),
  and Jinja templates of them (``*.jinja2`` such as the exercises'
  ``top.yaml.jinja2``, or any file holding ``{{``/``{%``), rendered as
  Timeloop's front end renders them.
  What it reads by a default or a guess (a misspelt attribute, an ERT
  entry under another name...) is issued as a
  :class:`jaxloop.errors.SpecWarning`; ``strict=True`` raises it as a
  SpecError instead.

  Args:
    *paths: the files.
    strict: raise warnings as errors.
    variables: the templates' variables (Timeloop's ``jinja_parse_data``),
      e.g. ``{"architecture": "eyeriss_like", "problem":
      "../layer_shapes/vgg16/00.yaml"}``.

  Raises:
    SpecError: bad input, naming the file, the key and a fix.
    UnsupportedFeatureError: a Timeloop feature jaxloop does not model.
  """
  with spec_warnings(strict):
    return workload_of(load_spec(*paths, variables=variables))


def workload_of(spec: Spec) -> Workload:
  """The :class:`Workload` of a parsed ``spec``: its structure and params.

  Raises:
    SpecError: a level without ERT entry or estimator model (with the
      v0.3 explanation where the files look like v0.3).
  """
  structure = build_structure(spec)
  try:
    params = build_params(spec, structure)
  except SpecError as e:
    raise explain_v03(e, spec.sources) from None
  return Workload(spec=spec, structure=structure, params=params)


def example_files() -> list[str]:
  """The bundled example's YAML files (architecture, problem, mapping,
  ERT/ART), shipped inside the package."""
  root = Path(__file__).resolve().parent / "specs" / "example"
  return sorted(str(p) for p in root.glob("*.yaml"))
