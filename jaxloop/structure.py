"""Spec -> static Structure (hashable, compiled once) + array parameters.

The ``Structure`` holds everything that changes the shape of the computation
or Python control flow: level/dim/data-space names, projection coefficients,
fan-out limits, block sizes.  It keys the jit cache, so one compiled model
serves every mapping (and every ``ArchParams``) of a given arch/problem pair.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np

from jaxloop.errors import SpecError, UnsupportedFeatureError
from jaxloop.spec import types as st

# Largest problem bound and rank span + 1: factors are int32 and the model
# tests translations through int32 keys (``tiling.translation_keys``).
MAX_BOUND = 1 << 30


@dataclasses.dataclass(frozen=True)
class Structure:
  """Static description of an (architecture, problem) pair.

  Attributes:
    level_names: ``[L]`` storage level names, innermost first.
    dim_names, dim_bounds: ``[D]``.
    dataspace_names: ``[S]``; ``read_write``: ``[S]``.
    projection: ``[S][R][D]`` integer coefficients, ranks padded with zero
      rows to the largest rank count R.
    rank_terms: ``[S][R]`` tuples of ``(dim, coef)`` with non-zero coef;
      at most two per rank (sliding windows), one rank per dim.
    instances: ``[L]`` instances of each storage level.
    fanout_x, fanout_y: ``[L]`` physical fan-out from level l to the
      instances below it (the compute units for l = 0).
    compute_instances: number of compute units.
    block_size, word_bits, cluster_size: ``[L]``.
    is_dummy: ``[L]`` storage-less ``inter_*_spatial`` levels.
    is_dram: ``[L]`` levels whose class is DRAM (Timeloop: technology DRAM).
    compute_word_bits: word bits of the arithmetic level.
    compute_name: name of the arithmetic level.
    cycle_seconds: clock period (s).
  """
  level_names: tuple[str, ...]
  dim_names: tuple[str, ...]
  dim_bounds: tuple[int, ...]
  dataspace_names: tuple[str, ...]
  read_write: tuple[bool, ...]
  projection: tuple[tuple[tuple[int, ...], ...], ...]
  rank_terms: tuple[tuple[tuple[tuple[int, int], ...], ...], ...]
  instances: tuple[int, ...]
  fanout_x: tuple[int, ...]
  fanout_y: tuple[int, ...]
  compute_instances: int
  block_size: tuple[int, ...]
  word_bits: tuple[int, ...]
  cluster_size: tuple[int, ...]
  is_dummy: tuple[bool, ...]
  is_dram: tuple[bool, ...]
  compute_word_bits: int
  compute_name: str
  cycle_seconds: float

  @property
  def num_levels(self) -> int:
    return len(self.level_names)

  @property
  def num_dims(self) -> int:
    return len(self.dim_names)

  @property
  def num_dataspaces(self) -> int:
    return len(self.dataspace_names)

  @property
  def num_ops(self) -> int:
    return math.prod(self.dim_bounds)

  def projection_array(self) -> np.ndarray:
    """``[S, R, D]`` int64 projection coefficients."""
    return np.asarray(self.projection, dtype=np.int64)

  def level_index(self, name: str) -> int:
    return self.level_names.index(name)

  def dataspace_index(self, name: str, path: str, where) -> int:
    """Index of data space ``name``; a SpecError at ``path`` if unknown."""
    if name not in self.dataspace_names:
      raise SpecError(
          f"unknown data space '{name}'", path=path, where=where,
          hint="Data spaces: " + ", ".join(self.dataspace_names))
    return self.dataspace_names.index(name)


def build_structure(spec: st.Spec) -> Structure:
  """Static structure of ``spec``'s architecture and problem."""
  prob, arch = spec.problem, spec.arch
  num_dims = len(prob.dims)
  max_rank = max(len(ds.projection) for ds in prob.dataspaces)
  for name, bound in zip(prob.dims, prob.bounds):
    if int(bound) >= MAX_BOUND:
      raise UnsupportedFeatureError(
          f"dimension '{name}' has bound {bound}; jaxloop supports bounds "
          f"below 2**30 (factors are int32, translations int32 keys)",
          path=f"problem.instance.{name}", where=prob.source)
  projection, rank_terms = [], []
  for ds in prob.dataspaces:
    rows, terms_of_ds = [], []
    seen_dims: dict[int, int] = {}
    for r, rank in enumerate(ds.projection):
      row = [0] * num_dims
      for coef, d in rank:
        row[d] += int(coef)
      terms = tuple((d, c) for d, c in enumerate(row) if c != 0)
      if len(terms) > 2:
        raise UnsupportedFeatureError(
            f"data space '{ds.name}' rank {r} sums {len(terms)} dimensions; "
            "jaxloop models at most two (a sliding window)",
            path=f"problem.shape.data_spaces.{ds.name}.projection",
            where=prob.source)
      span = sum(abs(c) * int(prob.bounds[d]) for d, c in terms)
      if span >= MAX_BOUND:
        raise UnsupportedFeatureError(
            f"data space '{ds.name}' rank {r} spans {span} coordinates; "
            "jaxloop supports ranks below 2**30 (int32 translation keys)",
            path=f"problem.shape.data_spaces.{ds.name}.projection",
            where=prob.source)
      for d, _ in terms:
        if d in seen_dims:
          raise UnsupportedFeatureError(
              f"dimension '{prob.dims[d]}' appears in two ranks of data space "
              f"'{ds.name}'",
              path=f"problem.shape.data_spaces.{ds.name}.projection",
              where=prob.source)
        seen_dims[d] = r
      rows.append(tuple(row))
      terms_of_ds.append(terms)
    while len(rows) < max_rank:
      rows.append((0,) * num_dims)
      terms_of_ds.append(())
    projection.append(tuple(rows))
    rank_terms.append(tuple(terms_of_ds))

  levels = arch.storage
  comp = arch.arithmetic
  fanout_x, fanout_y = [], []
  for i, lvl in enumerate(levels):
    child_x = comp.mesh_x if i == 0 else levels[i - 1].mesh_x
    child_y = comp.mesh_y if i == 0 else levels[i - 1].mesh_y
    child_n = comp.instances if i == 0 else levels[i - 1].instances
    if child_n % lvl.instances:
      raise SpecError(
          f"level '{lvl.name}' has {lvl.instances} instances but the level "
          f"below it has {child_n}, not a multiple",
          path=f"architecture.{lvl.name}", where=arch.source,
          hint="Inner levels must have a multiple of the outer level's "
          "instances.")
    fx = max(1, child_x // max(1, lvl.mesh_x))
    fy = max(1, child_y // max(1, lvl.mesh_y))
    if fx * fy != child_n // lvl.instances:
      # Meshes not given consistently: treat the whole fan-out as X.
      fx, fy = child_n // lvl.instances, 1
    fanout_x.append(fx)
    fanout_y.append(fy)

  return Structure(
      level_names=tuple(l.name for l in levels),
      dim_names=tuple(prob.dims),
      dim_bounds=tuple(int(b) for b in prob.bounds),
      dataspace_names=tuple(ds.name for ds in prob.dataspaces),
      read_write=tuple(bool(ds.read_write) for ds in prob.dataspaces),
      projection=tuple(projection),
      rank_terms=tuple(rank_terms),
      instances=tuple(int(l.instances) for l in levels),
      fanout_x=tuple(fanout_x),
      fanout_y=tuple(fanout_y),
      compute_instances=int(comp.instances),
      block_size=tuple(int(l.block_size) for l in levels),
      word_bits=tuple(int(l.word_bits) for l in levels),
      cluster_size=tuple(int(l.cluster_size) for l in levels),
      is_dummy=tuple(bool(l.is_dummy) for l in levels),
      is_dram=tuple(l.cls.upper().endswith("DRAM") for l in levels),
      compute_word_bits=int(comp.word_bits),
      compute_name=comp.name,
      cycle_seconds=float(arch.global_cycle_seconds),
  )


# ERT action names Timeloop looks up for each operation, first found wins
# (include/model/topology.hpp); the energy of an action with several entries
# is the largest of them.
_READ_ACTIONS = ("random_read", "read")
_FILL_ACTIONS = ("random_fill", "random_write", "fill", "write")
_UPDATE_ACTIONS = ("random_update", "random_write", "update", "write")
_COMPUTE_ACTIONS = ("mac_random", "mult_random", "mac", "mult", "compute")


def _action_energy(actions, names) -> float | None:
  for name in names:
    found = [a.energy for a in actions if a.action == name]
    if found:
      return float(max(found))
  return None


def build_params(spec: st.Spec, structure: Structure):
  """``ArchParams`` (numpy) from the spec's ERT/ART and buffer attributes.

  Without an ERT, energies and areas come from
  :func:`jaxloop.estimate.estimate_tables` (built-in models, no Accelergy).

  Raises:
    SpecError: a storage level / the compute level has no ERT entry, or (no
      ERT given) the built-in estimator cannot model a component.
  """
  from jaxloop.types import ArchParams
  arch = spec.arch
  ert = spec.ert
  if ert is None:
    # No Accelergy tables: use the built-in models (issue #6).  The tables'
    # ``source`` records that they were estimated.
    from jaxloop.estimate import estimate_tables
    ert, est_art = estimate_tables(spec)
    spec = dataclasses.replace(
        spec, ert=ert, art=est_art if spec.art is None else spec.art)
  L = len(arch.storage)
  read, fill, update, leak = (np.zeros(L) for _ in range(4))
  capacity, min_util = np.full(L, np.inf), np.zeros(L)
  rbw, wbw, sbw = (np.full(L, np.inf) for _ in range(3))
  area = np.zeros(L)
  for i, lvl in enumerate(arch.storage):
    # Storage-less inter_*_spatial levels have no ERT entry and no energy.
    actions = () if lvl.is_dummy else ert.lookup(lvl.ert_name or lvl.name)
    if actions is None:
      if True:
        raise SpecError(
            f"the ERT has no entry for storage level '{lvl.name}'",
            path=f"ERT.tables[{lvl.ert_name or lvl.name}]", where=ert.source,
            hint="Regenerate the ERT for this architecture, or check the "
            "level's name.")
      actions = ()
    read[i] = _action_energy(actions, _READ_ACTIONS) or 0.0
    fill[i] = _action_energy(actions, _FILL_ACTIONS) or 0.0
    update[i] = _action_energy(actions, _UPDATE_ACTIONS) or 0.0
    leak[i] = _action_energy(actions, ("leak",)) or 0.0
    if lvl.size is not None and not lvl.is_dummy:
      capacity[i] = math.floor(lvl.size / max(lvl.multiple_buffering, 1e-30))
    min_util[i] = lvl.min_utilization
    for arr, value in ((rbw, lvl.read_bandwidth), (wbw, lvl.write_bandwidth),
                       (sbw, lvl.shared_bandwidth)):
      if value is not None and value > 0:
        arr[i] = value
    if spec.art is not None and not lvl.is_dummy:
      # Timeloop reads ART areas into a C float.
      area[i] = float(np.float32(spec.art.lookup(lvl.ert_name or lvl.name)
                                 or 0.0))
  comp = arch.arithmetic
  comp_actions = ert.lookup(comp.ert_name or comp.name)
  compute = None if comp_actions is None else _action_energy(
      comp_actions, _COMPUTE_ACTIONS)
  if compute is None:
    raise SpecError(
        f"the ERT has no compute energy for '{comp.name}'",
        path=f"ERT.tables[{comp.ert_name or comp.name}]", where=ert.source,
        hint="Expected one of the actions: " + ", ".join(_COMPUTE_ACTIONS))
  compute_area = 0.0
  if spec.art is not None:
    compute_area = float(np.float32(spec.art.lookup(comp.ert_name or comp.name)
                                    or 0.0))
  return ArchParams(
      read_energy=read, fill_energy=fill, update_energy=update,
      leak_energy=leak, compute_energy=np.float64(compute),
      capacity=capacity, min_utilization=min_util, read_bandwidth=rbw,
      write_bandwidth=wbw, shared_bandwidth=sbw, area=area,
      compute_area=np.float64(compute_area))
