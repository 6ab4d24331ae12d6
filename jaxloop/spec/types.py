"""Frozen, validated spec objects: what the YAML readers produce.

No jax here.  Everything is hashable (tuples, not lists or dicts) so that the
static parts can key jit caches.  Level order follows Timeloop's stats:
``Architecture.storage[0]`` is the innermost storage level (Timeloop's
"Level 1"); the arithmetic level is Timeloop's "Level 0".
"""
from __future__ import annotations

import dataclasses
from typing import Optional


@dataclasses.dataclass(frozen=True)
class DataSpace:
  """One tensor of the problem (Timeloop: data space).

  Attributes:
    name: e.g. ``Weights``.
    projection: per rank (data-space axis), the affine terms
      ``((coefficient, dim_index), ...)``; the axis coordinate is
      ``sum(coef * dim)``.  ``Inputs`` of a strided conv has a rank
      ``((Wdilation, R), (Wstride, P))``.
    read_write: True for outputs (read-modify-write, reductions).
  """
  name: str
  projection: tuple[tuple[tuple[int, int], ...], ...]
  read_write: bool = False


@dataclasses.dataclass(frozen=True)
class Problem:
  """A loop nest over named dims with affine data spaces (Timeloop problem).

  Attributes:
    name: shape name, e.g. ``conv2D``.
    dims: dimension names in the order the spec lists them.
    bounds: ``[D]`` loop bounds (instance values).
    dataspaces: the tensors; order as in the spec.
    coefficients: resolved coefficient values ``((name, value), ...)``.
    source: file the problem came from (for error messages).
  """
  name: str
  dims: tuple[str, ...]
  bounds: tuple[int, ...]
  dataspaces: tuple[DataSpace, ...]
  coefficients: tuple[tuple[str, int], ...] = ()
  source: str = ""

  @property
  def num_ops(self) -> int:
    n = 1
    for b in self.bounds:
      n *= b
    return n


@dataclasses.dataclass(frozen=True)
class StorageLevel:
  """A buffer level (Timeloop: BufferLevel).

  Attributes:
    name: component name without instance range, e.g. ``GlobalBuffer``.
    cls: Accelergy class (``DRAM``, ``SRAM``, ``smartbuffer_RF``,
      ``dummy_storage`` for ``inter_*_spatial`` levels, ...).
    instances: total instances (product of meshes above and at it).
    mesh_x, mesh_y: physical mesh of the instances.
    depth: words per instance row count; None = unbounded (DRAM).
    width: bits per row; None when absent.
    word_bits: bits per word (``datawidth``).
    block_size: words per row (``width // datawidth``; ``block_size`` attr).
    cluster_size: Timeloop cluster size.
    n_banks: banks (affects nothing in the dense model; kept for reports).
    read_bandwidth, write_bandwidth, shared_bandwidth: words/cycle per
      instance, None = unlimited.
    multiple_buffering: Timeloop ``multiple_buffering``.
    min_utilization: Timeloop ``min_utilization``.
    reduction_supported: Timeloop ``reduction_supported``.
    is_dummy: True for storage-less ``inter_*_spatial`` levels.
    ert_name: the architecture path used in ERT/ART, e.g.
      ``System_top_level.GlobalBuffer[1..16]``.
    attributes: all attributes as ``((key, value), ...)`` (values as read).
    subclass: the component's ``subclass`` (v0.4), empty when absent.  With
      ``class: storage`` Timeloop models a buffer and Accelergy estimates
      its energy with the subclass (``smartbuffer_RF``, ``aladdin_register``).
  """
  name: str
  cls: str
  instances: int
  mesh_x: int = 1
  mesh_y: int = 1
  depth: Optional[int] = None
  width: Optional[int] = None
  word_bits: int = 8
  block_size: int = 1
  cluster_size: int = 1
  n_banks: int = 2
  read_bandwidth: Optional[float] = None
  write_bandwidth: Optional[float] = None
  shared_bandwidth: Optional[float] = None
  multiple_buffering: float = 1.0
  min_utilization: float = 0.0
  reduction_supported: bool = True
  is_dummy: bool = False
  ert_name: str = ""
  attributes: tuple[tuple[str, object], ...] = ()
  subclass: str = ""

  @property
  def energy_class(self) -> str:
    """The class energy and area are estimated with (Accelergy's rule:
    ``subclass`` when given, else ``class``)."""
    return self.subclass or self.cls

  @property
  def size(self) -> Optional[int]:
    """Capacity in words (Timeloop: depth * block_size)."""
    if self.depth is None:
      return None
    return self.depth * self.block_size


@dataclasses.dataclass(frozen=True)
class ArithmeticLevel:
  """The compute units (Timeloop: ArithmeticUnits, level 0)."""
  name: str
  cls: str
  instances: int
  mesh_x: int = 1
  mesh_y: int = 1
  word_bits: int = 16
  ert_name: str = ""
  attributes: tuple[tuple[str, object], ...] = ()
  subclass: str = ""

  @property
  def energy_class(self) -> str:
    """``subclass`` when given, else ``class`` (see StorageLevel)."""
    return self.subclass or self.cls


@dataclasses.dataclass(frozen=True)
class Architecture:
  """Storage hierarchy over an array of compute units.

  Attributes:
    storage: innermost first (``storage[0]`` is Timeloop's level 1).
    arithmetic: the compute level.
    global_cycle_seconds: clock period.
    technology: top-level technology attribute, if any.
    source: file the architecture came from.
  """
  storage: tuple[StorageLevel, ...]
  arithmetic: ArithmeticLevel
  global_cycle_seconds: float = 1e-9
  technology: str = ""
  source: str = ""


@dataclasses.dataclass(frozen=True)
class Directive:
  """One mapping or constraint entry (Timeloop: a ``targets``/``mapping`` item).

  Attributes:
    target: storage level name (after ``inter_*_spatial`` renaming).
    type: ``temporal``, ``spatial``, ``bypass`` (``datatype``/``dataspace``
      are normalised to ``bypass``), ``utilization``, ``parallelism``.
    factors: ``((dim, value), ...)`` as written; None if absent.
      In constraints a value of 0 means "unconstrained" as in Timeloop.
    factor_bounds: ``((dim, '<=' | '>=', value), ...)`` for constraint
      forms like ``M<=4`` (empty for mappings).
    permutation: dim names innermost first, as Timeloop writes them; may be
      a prefix in constraints.  None if absent.
    split: spatial X/Y split index (dims before it go to X); None if absent.
    keep, bypass: dataspace names; None if absent.
    no_multicast: dataspace names that must not be multicast (constraints).
    min: minimum utilization/parallelism for those constraint types.
    where: ``file:line`` of the entry.
  """
  target: str
  type: str
  factors: Optional[tuple[tuple[str, int], ...]] = None
  factor_bounds: tuple[tuple[str, str, int], ...] = ()
  permutation: Optional[tuple[str, ...]] = None
  split: Optional[int] = None
  keep: Optional[tuple[str, ...]] = None
  bypass: Optional[tuple[str, ...]] = None
  no_multicast: tuple[str, ...] = ()
  min: Optional[float] = None
  where: str = ""


@dataclasses.dataclass(frozen=True)
class ActionEnergy:
  """One ERT entry: an action's energy for given arguments (pJ)."""
  action: str
  energy: float
  arguments: tuple[tuple[str, object], ...] = ()


@dataclasses.dataclass(frozen=True)
class EnergyTable:
  """Accelergy ERT: per component path, its actions' energies.

  Attributes:
    entries: ``((ert_name, (ActionEnergy, ...)), ...)``.
    source: file it came from.
  """
  entries: tuple[tuple[str, tuple[ActionEnergy, ...]], ...] = ()
  source: str = ""

  def lookup(self, name: str) -> Optional[tuple[ActionEnergy, ...]]:
    """Actions of a component by full ert_name or by bare component name."""
    for key, actions in self.entries:
      if key == name:
        return actions
    bare = _bare(name)
    for key, actions in self.entries:
      if _bare(key) == bare:
        return actions
    return None


@dataclasses.dataclass(frozen=True)
class AreaTable:
  """Accelergy ART: per component path, its area (um^2)."""
  entries: tuple[tuple[str, float], ...] = ()
  source: str = ""

  def lookup(self, name: str) -> Optional[float]:
    for key, area in self.entries:
      if key == name:
        return area
    bare = _bare(name)
    for key, area in self.entries:
      if _bare(key) == bare:
        return area
    return None


@dataclasses.dataclass(frozen=True)
class MapperConfig:
  """The ``mapper:`` section (only what jaxloop honours is typed)."""
  optimization_metrics: tuple[str, ...] = ("edp",)
  algorithm: str = "random"
  timeout: int = 0
  victory_condition: int = 0
  search_size: Optional[int] = None
  num_threads: int = 1
  max_permutations_per_if_visit: int = 16
  raw: tuple[tuple[str, object], ...] = ()


@dataclasses.dataclass(frozen=True)
class Spec:
  """Everything read from a set of input files.

  Attributes:
    problem: the workload.
    arch: the architecture.
    mapping: mapping directives (empty for mapper inputs).
    constraints: architecture + mapspace constraints, merged.
    ert, art: energy and area tables (None when not given).
    mapper: mapper settings (None when absent).
    sources: the files read.
  """
  problem: Problem
  arch: Architecture
  mapping: tuple[Directive, ...] = ()
  constraints: tuple[Directive, ...] = ()
  ert: Optional[EnergyTable] = None
  art: Optional[AreaTable] = None
  mapper: Optional[MapperConfig] = None
  sources: tuple[str, ...] = ()


def _bare(name: str) -> str:
  """``System_top_level.GlobalBuffer[1..16]`` -> ``GlobalBuffer``."""
  without_range = name.split("[", 1)[0]
  return without_range.rsplit(".", 1)[-1]
