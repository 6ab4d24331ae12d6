"""The Python API: load specs, evaluate one mapping or a batch.

>>> wl = jaxloop.api.load("arch.yaml", "prob.yaml", "map.yaml", "ERT.yaml")
>>> stats = wl.evaluate()              # the mapping in the files
>>> jaxloop.report.stats_dict(wl.structure, stats)["summary"]["energy_uj"]
"""
from __future__ import annotations

import dataclasses
import os
from typing import Optional

import jax
import numpy as np

from jaxloop import mapping as mapping_lib
from jaxloop.errors import SpecError
from jaxloop.model.evaluate import make_evaluator, make_single_evaluator
from jaxloop.report import stats_dict
from jaxloop.spec import load_spec
from jaxloop.spec.types import Spec
from jaxloop.structure import Structure, build_params, build_structure
from jaxloop.types import ArchParams, Mapping, Stats


@dataclasses.dataclass(frozen=True)
class Workload:
  """A loaded (architecture, problem) pair with its numbers.

  Attributes:
    spec: everything read from the files.
    structure: the static structure (jit cache key).
    params: ERT/ART energies and areas, capacities, bandwidths.
  """
  spec: Spec
  structure: Structure
  params: ArchParams

  def mapping(self) -> Mapping:
    """The mapping given in the input files, as arrays."""
    if not self.spec.mapping:
      raise SpecError(
          "the input files contain no mapping", path="mapping",
          where=", ".join(self.spec.sources),
          hint="Add a map.yaml (for mapper outputs: timeloop-mapper.map.yaml)"
          ", or run `jaxloop map` to search for one.")
    return mapping_lib.mapping_from_directives(
        self.structure, self.spec.mapping, ", ".join(self.spec.sources))

  def evaluate(self, mapping: Optional[Mapping] = None) -> Stats:
    """Stats of one mapping (default: the one in the files)."""
    m = self.mapping() if mapping is None else mapping
    fn = make_single_evaluator(self.structure)
    return jax.tree.map(np.asarray, fn(self.params, m))

  def evaluate_batch(self, mappings: Mapping) -> Stats:
    """Stats of a batch (leading axis B on every Mapping field)."""
    fn = make_evaluator(self.structure)
    return jax.tree.map(np.asarray, fn(self.params, mappings))

  def stats_dict(self, stats: Stats) -> dict:
    return stats_dict(self.structure, stats)


def load(*paths: str | os.PathLike) -> Workload:
  """Reads Timeloop input files (merged by top-level key) into a Workload."""
  spec = load_spec(*paths)
  structure = build_structure(spec)
  return Workload(spec=spec, structure=structure,
                  params=build_params(spec, structure))
