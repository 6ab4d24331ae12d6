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
  """
  spec: Spec
  structure: Structure
  params: ArchParams

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
    """Writes ``stats.json`` and ``stats.txt`` (Timeloop's layout) of one
    mapping's ``stats`` to ``outdir``; returns the dict.

    Args:
      stats: one mapping's statistics.
      outdir: the folder (created).
      title: first line of ``stats.txt``.
      mapping: the mapping evaluated (default: the one in the files).
    """
    del mapping   # the files written from it come with Timeloop's outputs
    import json
    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    d = self.report(stats)
    (out / "stats.json").write_text(json.dumps(d, indent=1))
    (out / "stats.txt").write_text(stats_text(self.structure, stats, title))
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
    spec = load_spec(*paths, variables=variables)
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
