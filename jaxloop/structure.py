"""Spec -> static Structure (hashable, compiled once) + array parameters.

The ``Structure`` holds everything that changes the shape of the computation
or Python control flow: level/dim/data-space names, projection coefficients,
fan-out limits, block sizes.  It keys the jit cache, so one compiled model
serves every mapping (and every ``ArchParams``) of a given arch/problem pair.
"""
from __future__ import annotations

import dataclasses
import math

import jax
import numpy as np

from jaxloop import errors
from jaxloop.errors import SpecError, UnsupportedFeatureError
from jaxloop.spec import types as st
from jaxloop.spec.diagnostics import near_misses
from jaxloop.spec.tables import match_entry, name_difference

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
    bandwidth_limited: ``[L]`` triples ``(read, write, shared)``: the level
      has a finite bandwidth of that kind (Timeloop's throttling can bind
      there).  The model computes bandwidth demands only at such levels
      and ignores the ``ArchParams`` bandwidths of the others (unlimited);
      :func:`check_bandwidths` refuses params that contradict it and
      :func:`with_bandwidth_limits` widens it for params that need more.
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
  bandwidth_limited: tuple[tuple[bool, bool, bool], ...]

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
  """Static structure of ``spec``'s architecture and problem.

  Raises:
    UnsupportedFeatureError: a bound or rank span of 2**30 or more, a rank
      that sums more than two dims, or a dim in two ranks of a data space.
    SpecError: a level whose instances do not divide those of the level
      below it.
  """
  prob, arch = spec.problem, spec.arch
  _check_bounds(prob)
  projection, rank_terms = _projections(prob)
  levels, comp = arch.storage, arch.arithmetic
  fanouts = [_fanout(arch, i) for i in range(len(levels))]
  return Structure(
      level_names=tuple(l.name for l in levels),
      dim_names=tuple(prob.dims),
      dim_bounds=tuple(int(b) for b in prob.bounds),
      dataspace_names=tuple(ds.name for ds in prob.dataspaces),
      read_write=tuple(bool(ds.read_write) for ds in prob.dataspaces),
      projection=projection,
      rank_terms=rank_terms,
      instances=tuple(int(l.instances) for l in levels),
      fanout_x=tuple(fx for fx, _ in fanouts),
      fanout_y=tuple(fy for _, fy in fanouts),
      compute_instances=int(comp.instances),
      block_size=tuple(int(l.block_size) for l in levels),
      word_bits=tuple(int(l.word_bits) for l in levels),
      cluster_size=tuple(int(l.cluster_size) for l in levels),
      is_dummy=tuple(bool(l.is_dummy) for l in levels),
      is_dram=tuple(l.cls.upper().endswith("DRAM") for l in levels),
      compute_word_bits=int(comp.word_bits),
      compute_name=comp.name,
      cycle_seconds=float(arch.global_cycle_seconds),
      bandwidth_limited=tuple(
          tuple(_finite_bandwidth(v) for v in (
              l.read_bandwidth, l.write_bandwidth, l.shared_bandwidth))
          for l in levels),
  )


_BANDWIDTH_KINDS = ("read_bandwidth", "write_bandwidth", "shared_bandwidth")


def _finite_bandwidth(value) -> bool:
  """Timeloop reads a missing or non-positive bandwidth as unlimited."""
  return value is not None and 0 < value < math.inf


def _finite_bandwidths(params) -> np.ndarray:
  """``bool[L, 3]``: finite (read, write, shared) bandwidths anywhere in
  ``params`` (leaves ``[L]`` or batched ``[..., L]``)."""
  cols = [np.isfinite(np.asarray(getattr(params, k), np.float64))
          for k in _BANDWIDTH_KINDS]
  cols = [c.reshape(-1, c.shape[-1]).any(axis=0) for c in cols]
  return np.stack(cols, axis=-1)


def with_bandwidth_limits(structure: Structure, params) -> Structure:
  """``structure`` whose ``bandwidth_limited`` also covers every finite
  bandwidth of ``params`` (concrete arrays): the structure to compile for
  params that set a bandwidth the files left unlimited, as a sweep over
  bandwidths may."""
  need = _finite_bandwidths(params) | np.asarray(
      structure.bandwidth_limited, bool).reshape(-1, 3)
  return dataclasses.replace(
      structure, bandwidth_limited=tuple(
          tuple(bool(v) for v in row) for row in need))


def check_bandwidths(structure: Structure, params) -> None:
  """Refuses concrete ``params`` with a finite bandwidth at a level and
  kind that ``structure.bandwidth_limited`` says is unlimited (the model
  would ignore it).  Traced params are not checked.

  Raises:
    SpecError: naming the level, the kind and the fix.
  """
  leaves = [getattr(params, k) for k in _BANDWIDTH_KINDS]
  if any(isinstance(x, jax.core.Tracer) for x in leaves):
    return
  allowed = np.asarray(structure.bandwidth_limited, bool).reshape(-1, 3)
  extra = _finite_bandwidths(params) & ~allowed
  if extra.any():
    level, kind = (int(i) for i in np.argwhere(extra)[0])
    raise SpecError(
        f"these ArchParams give level '{structure.level_names[level]}' a "
        f"finite {_BANDWIDTH_KINDS[kind]}, but the structure was built "
        "with it unlimited, so the model would ignore it",
        path=f"ArchParams.{_BANDWIDTH_KINDS[kind]}",
        where="the params passed to the evaluator",
        hint="evaluate with jaxloop.structure.with_bandwidth_limits("
        "structure, params) (it compiles the throttling of that level), "
        "or set the bandwidth in the architecture files")


def _check_bounds(prob: st.Problem) -> None:
  """Every problem dimension's bound (loop trip count) is below 2**30."""
  for name, bound in zip(prob.dims, prob.bounds):
    if int(bound) >= MAX_BOUND:
      raise UnsupportedFeatureError(
          f"dimension '{name}' has bound {bound}; jaxloop supports bounds "
          f"below 2**30 (factors are int32, translations int32 keys)",
          path=f"problem.instance.{name}", where=prob.source)


def _projections(prob: st.Problem):
  """Projection coefficients and non-zero rank terms of every data space.

  Returns:
    ``(projection, rank_terms)``: ``[S][R][D]`` coefficients and ``[S][R]``
    ``((dim, coef), ...)`` tuples, both with ranks padded to the largest
    rank count R (zero rows, empty terms).
  """
  max_rank = max(len(ds.projection) for ds in prob.dataspaces)
  per_ds = [_dataspace_projection(prob, ds, max_rank)
            for ds in prob.dataspaces]
  return (tuple(rows for rows, _ in per_ds),
          tuple(terms for _, terms in per_ds))


def _dataspace_projection(prob: st.Problem, ds: st.DataSpace, max_rank: int):
  """One data space's ``[R][D]`` coefficient rows and ``[R]`` rank terms.

  Each rank (data-space axis) is an affine sum of dims; a dim may appear
  in at most one rank.
  """
  rows, terms_of_ds = [], []
  seen_dims: dict[int, int] = {}
  for r, rank in enumerate(ds.projection):
    row, terms = _rank_row(prob, ds, r, rank)
    for d, _ in terms:
      if d in seen_dims:
        raise UnsupportedFeatureError(
            f"dimension '{prob.dims[d]}' appears in two ranks of data space "
            f"'{ds.name}'",
            path=f"problem.shape.data_spaces.{ds.name}.projection",
            where=prob.source)
      seen_dims[d] = r
    rows.append(row)
    terms_of_ds.append(terms)
  rows += [(0,) * len(prob.dims)] * (max_rank - len(rows))
  terms_of_ds += [()] * (max_rank - len(terms_of_ds))
  return tuple(rows), tuple(terms_of_ds)


def _rank_row(prob: st.Problem, ds: st.DataSpace, r: int, rank):
  """Rank ``r`` of ``ds`` as a ``[D]`` coefficient row and its non-zero
  ``(dim, coef)`` terms: one dim, or two for a sliding window, spanning
  fewer than 2**30 coordinates."""
  row = [0] * len(prob.dims)
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
  return tuple(row), terms


def _fanout(arch: st.Architecture, i: int) -> tuple[int, int]:
  """Physical ``(X, Y)`` fan-out from storage level ``i`` to the instances
  of the level below it (the compute units for ``i = 0``).

  The fan-out is the ratio of the meshes; meshes that do not multiply to
  the instance ratio put the whole fan-out on X.
  """
  lvl = arch.storage[i]
  child = arch.arithmetic if i == 0 else arch.storage[i - 1]
  child_n = child.instances
  if child_n % lvl.instances:
    raise SpecError(
        f"level '{lvl.name}' has {lvl.instances} instances but the level "
        f"below it has {child_n}, not a multiple",
        path=f"architecture.{lvl.name}", where=arch.source,
        hint="Inner levels must have a multiple of the outer level's "
        "instances.")
  fx = max(1, child.mesh_x // max(1, lvl.mesh_x))
  fy = max(1, child.mesh_y // max(1, lvl.mesh_y))
  if fx * fy != child_n // lvl.instances:
    # Meshes not given consistently: treat the whole fan-out as X.
    fx, fy = child_n // lvl.instances, 1
  return fx, fy


# ERT action names Timeloop looks up for each operation, first found wins
# (include/model/topology.hpp); the energy of an action with several entries
# is the largest of them.
_READ_ACTIONS = ("random_read", "read")
_FILL_ACTIONS = ("random_fill", "random_write", "fill", "write")
_UPDATE_ACTIONS = ("random_update", "random_write", "update", "write")
_COMPUTE_ACTIONS = ("mac_random", "mult_random", "mac", "mult", "compute")


def _action_energy(actions, names) -> float | None:
  """Energy (pJ) of the first of ``names`` the ERT entry has, the largest
  if it lists that action more than once; None if it has none of them."""
  for name in names:
    found = [a.energy for a in actions if a.action == name]
    if found:
      return float(max(found))
  return None


def _art_area(art: st.AreaTable, name: str, level: str,
              renamed: list) -> float:
  """Area (um^2) of the ART entry ``name``, rounded through a C float as
  Timeloop reads it; 0 (with a warning) when the ART has none."""
  found = _table_entry(art, name, level, "ART", renamed)
  if found is None:
    errors.warn(f"the ART has no entry for '{level}' ({name}); its area is "
                "taken as 0", path=f"ART.tables[{name}]", where=art.source,
                hint="regenerate the ART for this architecture",
                stacklevel=4)
    return 0.0
  return float(np.float32(found))


def _table_entry(table, name: str, level: str, kind: str, renamed: list):
  """The ERT actions / ART area of the component ``name`` (level
  ``level``), or None; an entry matched under another name (top level,
  instance range) is noted in ``renamed`` as ``(kind, source, entry,
  name, level)``."""
  found = match_entry(table.entries, name, table=kind, source=table.source)
  if found is None:
    return None
  key, value = found
  if key != name:
    renamed.append((kind, table.source, key, name, level))
  return value


def _warn_renamed(renamed: list) -> None:
  """One warning per way table entries differ from the architecture's
  names (``PE_top_level`` for ``system_top_level``...), naming the levels
  and an example pair."""
  groups: dict[str, list] = {}
  for kind, source, key, name, level in renamed:
    groups.setdefault(name_difference(name, key), []).append(
        (kind, source, key, name, level))
  for difference, items in groups.items():
    kinds = " and ".join(dict.fromkeys(k for k, *_ in items))
    levels = list(dict.fromkeys(level for *_, level in items))
    _, source, key, name, _ = items[0]
    errors.warn(
        f"{kinds} entries matched to level{'s' if len(levels) > 1 else ''} "
        f"{', '.join(repr(l) for l in levels)} by component name only: they "
        f"differ in {difference} (e.g. '{key}' used for '{name}')",
        path=f"{items[0][0]}.tables[{key}]", where=source,
        hint=f"regenerate the {kinds} for this architecture (or rename the "
        "entries)", stacklevel=4)


# Attributes of a level that change jaxloop's results, and what is used
# when one is not given (named in the warning about a look-alike).
READ_ATTRIBUTES = {
    "depth": "no depth: the buffer's capacity is unbounded",
    "memory_depth": "no depth: the buffer's capacity is unbounded",
    "entries": "no depth: the buffer's capacity is unbounded",
    "width": "no width: one word per access (block_size 1)",
    "memory_width": "no width: one word per access (block_size 1)",
    "block_size": "width / datawidth words per access",
    "datawidth": "16-bit words",
    "word_bits": "16-bit words",
    "cluster_size": "cluster_size 1",
    "read_bandwidth": "unlimited read bandwidth",
    "write_bandwidth": "unlimited write bandwidth",
    "shared_bandwidth": "unlimited shared bandwidth",
    "multiple_buffering": "multiple_buffering 1",
    "min_utilization": "min_utilization 0",
    "reduction_supported": "reduction_supported true",
    "n_banks": "n_banks 2",
    "meshX": "the mesh of the enclosing containers",
    "meshY": "the mesh of the enclosing containers",
    "technology": "the top level's technology",
    "global_cycle_seconds": "the top level's clock (default 1 ns)",
}
# Read by the built-in energy models (without an ERT).
ESTIMATOR_ATTRIBUTES = {
    "type": "DRAM type LPDDR4", "multiplier_width": "the width",
    "adder_width": "the multiplier's width", "exponent": "width",
    "mantissa": "width", "n_bits": "width", "width_a": "width",
    "width_b": "width", "precision": "width", "length": "no length",
}
# Valid attributes jaxloop does not read (Timeloop's other buffer and
# arithmetic attributes, Accelergy's usual ones): never misspellings.
OTHER_ATTRIBUTES = (
    "word-bits", "block-size", "cluster-size", "read-bandwidth",
    "write-bandwidth", "shared-bandwidth", "multiple-buffering",
    "min-utilization", "n-banks", "num_banks", "mesh_x", "mesh_y",
    "n_ports", "num_ports", "nports", "n_rdwr_ports", "n_rd_ports",
    "n_wr_ports", "allow_overbooking", "has_power_gating", "power_gated_at",
    "addr_gen_energy", "bandwidth", "cluster_area", "compression_supported",
    "decompression_supported", "concordant_compressed_tile_traversal",
    "data_storage_depth", "data_storage_width", "metadata_block_size",
    "metadata_datawidth", "metadata_depth", "metadata_storage_depth",
    "metadata_storage_width", "metadata_width", "metadata_word_bits",
    "n_words", "network_drain", "network_drain_latency", "network_fill",
    "network_fill_latency", "network_read", "network_update", "sizeKB",
    "tile_partition_supported", "vector_access_energy", "word_width",
    "instances", "update_fifo_depth", "latency", "cycle_time",
    "action_latency_cycles", "area_scale", "energy_scale", "version",
    "datawidth_a", "datawidth_b")


def _check_attributes(spec: st.Spec) -> None:
  """Warns about each attribute that looks like a misspelt one jaxloop
  reads (``detph`` for ``depth``), naming the components, the attribute
  meant and what is used without it.  The energy models' attributes count
  only when they estimate (no ERT)."""
  definitions = {}
  if spec.ert is None:
    from jaxloop.estimate.tables import compound_definitions
    definitions = compound_definitions(spec.sources)
  levels = [l for l in spec.arch.storage if not l.is_dummy]
  levels.append(spec.arch.arithmetic)
  found: dict[tuple[str, str], list[str]] = {}
  for lvl in levels:
    targets = dict(READ_ATTRIBUTES)
    if spec.ert is None:
      targets.update(ESTIMATOR_ATTRIBUTES)
      d = definitions.get(lvl.energy_class)
      targets.update({k: "the class's default" for k, _ in
                      (d.attributes if d else ())})
    for wrong, meant in near_misses(dict(lvl.attributes), targets,
                                    OTHER_ATTRIBUTES):
      found.setdefault((wrong, meant), []).append(lvl.name)
  for (wrong, meant), names in found.items():
    used = {**READ_ATTRIBUTES, **ESTIMATOR_ATTRIBUTES}.get(
        meant, "the class's default")
    who = ", ".join(f"'{n}'" for n in names)
    errors.warn(
        f"component{'s' if len(names) > 1 else ''} {who}: attribute "
        f"'{wrong}' is not one jaxloop or Timeloop reads, so it is ignored "
        f"and '{meant}' is not given ({used})",
        path=f"architecture.{names[0]}.attributes.{wrong}",
        where=spec.arch.source, hint=f"did you mean '{meant}'?",
        stacklevel=3)


def build_params(spec: st.Spec, structure: Structure):
  """``ArchParams`` (numpy) from the spec's ERT/ART and buffer attributes.

  Per storage level (``[L]`` arrays, innermost first): energies per read,
  fill, update and leak from the ERT, capacity (words per instance divided
  by the multiple buffering), minimum utilization, bandwidths (``inf`` when
  unlimited) and area from the ART; the compute level's energy per MAC and
  area are scalars.  Without an ERT, energies and areas come from
  :func:`jaxloop.estimate.estimate_tables` (built-in models, no Accelergy).

  Raises:
    SpecError: a storage level / the compute level has no ERT entry, or (no
      ERT given) the built-in estimator cannot model a component.
  """
  from jaxloop.types import ArchParams
  _check_attributes(spec)
  spec = _with_tables(spec)
  renamed: list = []
  rows = [_storage_values(lvl, spec.ert, spec.art, renamed)
          for lvl in spec.arch.storage]

  def column(key):
    return np.array([row[key] for row in rows], dtype=np.float64)

  compute, compute_area = _compute_values(spec.arch.arithmetic, spec.ert,
                                          spec.art, renamed)
  _warn_renamed(renamed)
  return ArchParams(
      read_energy=column("read"), fill_energy=column("fill"),
      update_energy=column("update"), leak_energy=column("leak"),
      compute_energy=np.float64(compute), capacity=column("capacity"),
      min_utilization=column("min_utilization"),
      read_bandwidth=column("read_bandwidth"),
      write_bandwidth=column("write_bandwidth"),
      shared_bandwidth=column("shared_bandwidth"), area=column("area"),
      compute_area=np.float64(compute_area))


def _with_tables(spec: st.Spec) -> st.Spec:
  """``spec`` with an ERT: without Accelergy tables, the built-in models'
  ERT (and their ART where the spec has none); ``source`` of an estimated
  table records that it was estimated."""
  if spec.ert is not None:
    return spec
  from jaxloop.estimate import estimate_tables
  ert, est_art = estimate_tables(spec)
  return dataclasses.replace(
      spec, ert=ert, art=est_art if spec.art is None else spec.art)


def _storage_values(lvl: st.StorageLevel, ert: st.EnergyTable,
                    art: st.AreaTable | None,
                    renamed: list) -> dict[str, float]:
  """One storage level's ``ArchParams`` entries, keyed by field name
  (``renamed``: see :func:`_table_entry`)."""
  name = lvl.ert_name or lvl.name
  # Storage-less inter_*_spatial levels have no ERT entry and no energy.
  actions = () if lvl.is_dummy else _table_entry(ert, name, lvl.name, "ERT",
                                                  renamed)
  if actions is None:
    raise SpecError(
        f"the ERT has no entry for storage level '{lvl.name}'",
        path=f"ERT.tables[{name}]", where=ert.source,
        hint="Regenerate the ERT for this architecture, or check the "
        "level's name.")
  capacity = np.inf
  if lvl.size is not None and not lvl.is_dummy:
    capacity = math.floor(lvl.size / max(lvl.multiple_buffering, 1e-30))

  def bandwidth(value):
    return value if value is not None and value > 0 else np.inf

  area = 0.0
  if art is not None and not lvl.is_dummy:
    area = _art_area(art, name, lvl.name, renamed)
  return {
      "read": _action_energy(actions, _READ_ACTIONS) or 0.0,
      "fill": _action_energy(actions, _FILL_ACTIONS) or 0.0,
      "update": _action_energy(actions, _UPDATE_ACTIONS) or 0.0,
      "leak": _action_energy(actions, ("leak",)) or 0.0,
      "capacity": capacity,
      "min_utilization": lvl.min_utilization,
      "read_bandwidth": bandwidth(lvl.read_bandwidth),
      "write_bandwidth": bandwidth(lvl.write_bandwidth),
      "shared_bandwidth": bandwidth(lvl.shared_bandwidth),
      "area": area,
  }


def _compute_values(comp: st.ArithmeticLevel, ert: st.EnergyTable,
                    art: st.AreaTable | None,
                    renamed: list) -> tuple[float, float]:
  """``(energy per compute action in pJ, area in um^2)`` of the arithmetic
  level (Timeloop's level 0)."""
  name = comp.ert_name or comp.name
  comp_actions = _table_entry(ert, name, comp.name, "ERT", renamed)
  compute = None if comp_actions is None else _action_energy(
      comp_actions, _COMPUTE_ACTIONS)
  if compute is None:
    raise SpecError(
        f"the ERT has no compute energy for '{comp.name}'",
        path=f"ERT.tables[{name}]", where=ert.source,
        hint="Expected one of the actions: " + ", ".join(_COMPUTE_ACTIONS))
  area = 0.0 if art is None else _art_area(art, name, comp.name, renamed)
  return compute, area
