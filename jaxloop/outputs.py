"""Timeloop-format output files for one evaluated mapping (no jax).

What ``timeloop-model`` / ``timeloop-mapper`` write next to their stats,
so that Timeloop users find the same files and Timeloop itself can re-run
what jaxloop evaluated:

* ``map.txt``: the loop nest as Timeloop prints it (``Mapping::PrettyPrint``
  -> ``Nest::PrettyPrint`` in ``src/mapping/nest.cpp``, loops as
  ``Descriptor::Print`` in ``src/mapping/loop.cpp``, NVlabs/timeloop
  0fc43fb);
* ``map.yaml``: the mapping as Timeloop directives
  (:func:`jaxloop.mapping.directives_from_mapping`);
* ``parsed-processed-input.yaml``: the flattened spec (the ``subtree`` /
  ``local`` architecture, the problem's shape and instance, constraints,
  the ``mapper`` section) that Timeloop's C++ reads, without the mapping;
* ``ERT.yaml`` / ``ART.yaml``: the energy and area tables used (as read,
  or jaxloop's built-in estimates), floats written so they read back
  exactly.

``timeloop-model parsed-processed-input.yaml ERT.yaml ART.yaml map.yaml``
then evaluates the same mapping with the same numbers, and ``jaxloop.load``
of the same four files gives the same workload and mapping.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import yaml

from jaxloop.mapping import directives_from_mapping
from jaxloop.spec import types as st
from jaxloop.structure import Structure
from jaxloop.types import Mapping, Stats

# Per storage level, the spatial loop order (dim indices, innermost first)
# or None for jaxloop's default (dim order).
SpatialOrder = Optional[Sequence[Optional[Sequence[int]]]]

PROCESSED_INPUT = "parsed-processed-input.yaml"


# --------------------------------------------------------------------------
# Loop nest


@dataclasses.dataclass(frozen=True)
class Loop:
  """One loop of the nest: ``for <dim> in [0:<bound>)``.

  Attributes:
    dim: dim index; bound: trip count (> 1: trivial loops are not listed);
    kind: ``"T"`` temporal, ``"X"`` / ``"Y"`` spatial along X / Y.
  """
  dim: int
  bound: int
  kind: str

  def text(self, structure: Structure) -> str:
    """``Descriptor::Print`` (long form)."""
    s = f"for {structure.dim_names[self.dim]} in [0:{self.bound})"
    if self.kind != "T":
      s += f" (Spatial-{self.kind})"
    return s


def _np_mapping(mapping: Mapping) -> dict:
  return {k: np.asarray(v) for k, v in vars(mapping).items()}


def spatial_permutation(structure: Structure, order) -> list[int]:
  """Dims in spatial-loop order (innermost first): ``order`` (a spec's
  spatial permutation) with the missing dims after it, or dim order."""
  listed = [int(d) for d in (order or ())]
  return listed + [d for d in range(structure.num_dims) if d not in listed]


def level_loops(structure: Structure, mapping: Mapping, level: int,
                spatial_order: SpatialOrder = None) -> list[Loop]:
  """Non-trivial loops of storage level ``level`` (0 = innermost),
  innermost first, as Timeloop nests them (parser.cpp / arch-properties.cpp):
  the level's spatial loops (X inside Y, each in spatial-permutation order)
  inside its temporal loops (``mapping.order``)."""
  m = _np_mapping(mapping)
  perm = spatial_permutation(
      structure, None if spatial_order is None else spatial_order[level])
  sx, sy = m["spatial_x"][level], m["spatial_y"][level]
  loops = [Loop(d, int(sx[d]), "X") for d in perm if sx[d] > 1]
  loops += [Loop(d, int(sy[d]), "Y") for d in perm if sy[d] > 1]
  t = m["temporal"][level]
  loops += [Loop(int(d), int(t[d]), "T") for d in m["order"][level]
            if t[d] > 1]
  return loops


def spatial_orders(spec: st.Spec, structure: Structure):
  """Per storage level, the spatial permutation (dim indices, innermost
  first) of the spec's mapping, None where it has no spatial directive.

  jaxloop's mapping arrays do not carry it; it only orders the printed
  spatial loops (and the written ``spatial`` directives)."""
  out: list[Optional[tuple[int, ...]]] = [None] * structure.num_levels
  for d in spec.mapping:
    if d.type != "spatial" or d.target not in structure.level_names:
      continue
    names = [n for n in (d.permutation or ()) if n in structure.dim_names]
    out[structure.level_names.index(d.target)] = tuple(
        structure.dim_names.index(n) for n in names)
  return tuple(out)


def map_text(structure: Structure, stats: Stats, mapping: Mapping,
             spatial_order: SpatialOrder = None) -> str:
  """The loop nest as ``timeloop-model.map.txt`` (``Nest::PrettyPrint``).

  Levels from the outermost: ``Name [ Weights:T (U) ... ] `` for the data
  spaces kept there (T the tile size, U the utilized capacity: equal in a
  dense model), a dashed rule before the level's first loop, loops indented
  two more spaces each, ``(Spatial-X)`` / ``(Spatial-Y)`` marks, and
  ``<< Compute >>`` innermost.
  """
  m = _np_mapping(mapping)
  cap = np.asarray(stats.utilized_capacity)
  out: list[str] = []
  indent = "| "
  dashes = ""
  newline = ""
  for lvl in reversed(range(structure.num_levels)):
    out.append(newline)
    newline = ""
    head = structure.level_names[lvl] + " [ "
    for s, name in enumerate(structure.dataspace_names):
      if m["keep"][lvl, s] and not structure.is_dummy[lvl]:
        size = int(cap[lvl, s])
        head += f"{name}:{size} ({size}) "
    head += "] "
    out.append(head + "\n")
    dashes = "-" * (len(head) - 1) + "\n"
    for loop in reversed(level_loops(structure, mapping, lvl, spatial_order)):
      out.append(dashes)
      dashes = ""
      out.append(indent + loop.text(structure) + "\n")
      indent += "  "
      newline = "\n"
  out.append(dashes + indent + "<< Compute >>\n")
  return "".join(out)


# --------------------------------------------------------------------------
# The flattened spec (parsed-processed-input.yaml)

# Attributes written from the parsed level (resolved values), and spellings
# of the same quantities dropped so that Timeloop reads only these.
_GEOMETRY_ALIASES = (
    "word_bits", "word-bits", "word_width", "memory_width",
    "data_storage_width", "memory_depth", "data_storage_depth", "entries",
    "sizeKB", "n_words", "block-size", "cluster-size", "num_banks", "n-banks",
    "instances", "read-bandwidth", "write-bandwidth", "shared-bandwidth",
    "bandwidth", "multiple-buffering", "min-utilization")


def _scalar(v) -> bool:
  return v is None or isinstance(v, (bool, int, float, str))


def _top_name(spec: st.Spec) -> str:
  """The top subtree's name: the common prefix of the levels' ERT paths
  (``System_top_level`` in ``System_top_level.GlobalBuffer[1..16]``)."""
  levels = list(spec.arch.storage) + [spec.arch.arithmetic]
  heads = set()
  for lvl in levels:
    bare = lvl.ert_name.rsplit("[", 1)[0] if lvl.ert_name.endswith("]") \
        else lvl.ert_name
    if "." in bare:
      heads.add(bare.rsplit(".", 1)[0])
  if len(heads) == 1:
    return heads.pop()
  return "System"


def _storage_attributes(lvl: st.StorageLevel) -> dict:
  """A buffer's attributes with the geometry jaxloop modelled spelled the
  way Timeloop reads it (``datawidth``, ``depth``, ``block_size``,
  ``cluster_size``; ``width`` only when it equals their product)."""
  a = {k: v for k, v in lvl.attributes
       if _scalar(v) and k not in _GEOMETRY_ALIASES}
  for k in ("depth", "width", "read_bandwidth", "write_bandwidth",
            "shared_bandwidth"):
    a.pop(k, None)
  a["datawidth"] = int(lvl.word_bits)
  if lvl.depth is not None:
    a["depth"] = int(lvl.depth)
  if lvl.width is not None and \
      lvl.width == lvl.word_bits * lvl.block_size * lvl.cluster_size:
    a["width"] = int(lvl.width)
  a["block_size"] = int(lvl.block_size)
  a["cluster_size"] = int(lvl.cluster_size)
  a["n_banks"] = int(lvl.n_banks)
  for k in ("read_bandwidth", "write_bandwidth", "shared_bandwidth"):
    v = getattr(lvl, k)
    if v is not None:
      a[k] = float(v)
  a["multiple_buffering"] = float(lvl.multiple_buffering)
  a["min_utilization"] = float(lvl.min_utilization)
  a["reduction_supported"] = bool(lvl.reduction_supported)
  a["meshX"] = int(lvl.mesh_x)
  a["meshY"] = int(lvl.mesh_y)
  return a


def _component(lvl, attributes: dict) -> dict:
  node = {"name": f"{lvl.name}[1..{lvl.instances}]", "class": lvl.cls}
  if lvl.subclass:
    node["subclass"] = lvl.subclass
  node["attributes"] = attributes
  return node


def architecture_document(spec: st.Spec) -> dict:
  """The ``architecture:`` section in Timeloop's flattened v0.4 form: one
  subtree whose ``local`` list holds every level, outermost first, then the
  arithmetic level; ``name[1..N]`` gives N instances."""
  arch = spec.arch
  local = [_component(lvl, _storage_attributes(lvl))
           for lvl in reversed(arch.storage)]
  comp = arch.arithmetic
  attrs = {k: v for k, v in comp.attributes if _scalar(v)
           and k not in ("instances",)}
  attrs["datawidth"] = int(comp.word_bits)
  attrs["meshX"] = int(comp.mesh_x)
  attrs["meshY"] = int(comp.mesh_y)
  local.append(_component(comp, attrs))
  top = {"version": "0.4",
         "global_cycle_seconds": float(arch.global_cycle_seconds)}
  if arch.technology:
    top["technology"] = arch.technology
  return {"version": "0.4",
          "subtree": [{"name": _top_name(spec), "attributes": top,
                       "local": local}]}


def problem_document(problem: st.Problem) -> dict:
  """The ``problem:`` section: shape (dims, data spaces as ``[dim]`` /
  ``[dim, coefficient]`` terms, coefficients) and instance (bounds and
  coefficient values).  A term's coefficient is named after a problem
  coefficient of that value (a new ``c<value>`` one when none has it)."""
  coefs = {name: int(v) for name, v in problem.coefficients}

  def coef_name(value: int) -> str:
    for name, v in coefs.items():
      if v == value:
        return name
    name = f"c{value}"
    while name in coefs or name in problem.dims:
      name += "_"
    coefs[name] = value
    return name

  data_spaces = []
  for ds in problem.dataspaces:
    proj = []
    for rank in ds.projection:
      terms = []
      for c, d in rank:
        dim = problem.dims[d]
        terms.append([dim] if int(c) == 1 else [dim, coef_name(int(c))])
      proj.append(terms)
    data_spaces.append({"name": ds.name, "projection": proj,
                        "read_write": bool(ds.read_write)})
  instance = {d: int(b) for d, b in zip(problem.dims, problem.bounds)}
  instance.update(coefs)
  return {"version": "0.4",
          "shape": {"name": problem.name, "dimensions": list(problem.dims),
                    "coefficients": [{"name": n, "default": v}
                                     for n, v in coefs.items()],
                    "data_spaces": data_spaces},
          "instance": instance}


def _dims_text(names: Sequence[str]):
  """A permutation as Timeloop writes it: a string of one-letter dims, or
  a list when a name is longer."""
  names = list(names)
  return "".join(names) if all(len(n) == 1 for n in names) else names


def constraint_document(d: st.Directive) -> dict:
  """One constraint directive as a ``targets`` entry (factor bounds as
  ``M<=4`` / ``M>=2`` tokens, as Timeloop's constraints.cpp parses them)."""
  out: dict = {"target": d.target, "type": d.type}
  tokens = [f"{n}={int(v)}" for n, v in d.factors or ()]
  tokens += [f"{n}{op}{int(v)}" for n, op, v in d.factor_bounds]
  if tokens:
    out["factors"] = " ".join(tokens)
  if d.permutation is not None:
    out["permutation"] = _dims_text(d.permutation)
  if d.split is not None:
    out["split"] = int(d.split)
  if d.keep is not None:
    out["keep"] = list(d.keep)
  if d.bypass is not None:
    out["bypass"] = list(d.bypass)
  if d.no_multicast:
    out["no_multicast_no_reduction"] = list(d.no_multicast)
  if d.min is not None:
    out["min"] = float(d.min)
  return out


def _plain(v):
  if isinstance(v, (tuple, list)):
    return [_plain(x) for x in v]
  if isinstance(v, dict):
    return {k: _plain(x) for k, x in v.items()}
  return v


def mapper_document(mapper: Optional[st.MapperConfig]) -> dict:
  """The ``mapper:`` section as read (every key kept), or Timeloop's
  defaults for jaxloop's objective when the inputs had none."""
  if mapper is None:
    return {"version": "0.4", "optimization_metrics": ["edp"],
            "algorithm": "hybrid", "timeout": 1000, "victory_condition": 500,
            "num_threads": 8}
  doc = {k: _plain(v) for k, v in mapper.raw}
  doc.setdefault("version", "0.4")
  return doc


def processed_input(spec: st.Spec) -> dict:
  """The flattened spec Timeloop's C++ reads, without the mapping (give
  it ``map.yaml``): architecture, constraints (if any), problem, mapper.

  The constraints (architecture and mapspace ones, merged as jaxloop read
  them) are written as ``mapspace_constraints``: timeloop-mapper searches
  within them all the same, while timeloop-model, which checks a given
  mapping against ``architecture_constraints`` only, evaluates any mapping
  (Timeloop 0fc43fb rejects even its own mapper's map.yaml against the
  architecture constraints it was found under, e.g. for a spatial split
  written differently)."""
  doc: dict = {"architecture": architecture_document(spec)}
  if spec.constraints:
    doc["mapspace_constraints"] = {
        "targets": [constraint_document(d) for d in spec.constraints]}
  doc["problem"] = problem_document(spec.problem)
  doc["mapper"] = mapper_document(spec.mapper)
  return doc


# --------------------------------------------------------------------------
# ERT / ART


def used_tables(spec: st.Spec) -> tuple[st.EnergyTable,
                                        Optional[st.AreaTable]]:
  """The tables the model used: the given ERT/ART, or (no ERT) the
  built-in estimates, whose ART stands in where none was given; the ART is
  None when an ERT came without one (areas 0)."""
  if spec.ert is not None:
    return spec.ert, spec.art
  from jaxloop.estimate import estimate_tables
  ert, art = estimate_tables(spec)
  return ert, art if spec.art is None else spec.art


def tables_documents(spec: st.Spec) -> tuple[dict, dict]:
  """``({"ERT": ...}, {"ART": ...})`` in Accelergy's v0.4 format: entries
  as read (names, actions, arguments) or estimated.  Without an ART every
  level gets area 0, which is what the model used."""
  ert, art = used_tables(spec)
  e = {"ERT": {"version": "0.4", "tables": [
      {"name": name, "actions": [
          {"name": a.action, "arguments": _plain(dict(a.arguments)),
           "energy": float(a.energy)} for a in actions]}
      for name, actions in ert.entries]}}
  if art is None:
    levels = list(spec.arch.storage) + [spec.arch.arithmetic]
    entries = [(lvl.ert_name or lvl.name, 0.0) for lvl in levels]
  else:
    entries = list(art.entries)
  a = {"ART": {"version": "0.4", "tables": [
      {"name": name, "area": float(area)} for name, area in entries]}}
  return e, a


# --------------------------------------------------------------------------
# Writing


class _Dumper(yaml.SafeDumper):
  """Block-style YAML; lists indented under their key."""

  def increase_indent(self, flow=False, indentless=False):
    return super().increase_indent(flow, False)


def dump(doc: dict) -> str:
  return yaml.dump(doc, Dumper=_Dumper, sort_keys=False,
                   default_flow_style=False)


def write_timeloop_files(spec: st.Spec, structure: Structure, stats: Stats,
                         mapping: Mapping, outdir: str | Path,
                         spatial_order: SpatialOrder = None) -> list[Path]:
  """Writes map.txt, map.yaml, parsed-processed-input.yaml, ERT.yaml and
  ART.yaml for one mapping and its stats; returns the paths."""
  out = Path(outdir)
  out.mkdir(parents=True, exist_ok=True)
  ert, art = tables_documents(spec)
  files = {
      "map.txt": map_text(structure, stats, mapping, spatial_order),
      "map.yaml": dump({"mapping": directives_from_mapping(
          structure, mapping, spatial_order)}),
      PROCESSED_INPUT: dump(processed_input(spec)),
      "ERT.yaml": dump(ert),
      "ART.yaml": dump(art),
  }
  paths = []
  for name, text in files.items():
    (out / name).write_text(text)
    paths.append(out / name)
  return paths
