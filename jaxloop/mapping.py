"""Timeloop mapping directives <-> Mapping arrays (numpy, off-jit).

A Timeloop mapping lists, per target level, a ``temporal`` directive
(factors + permutation, innermost first), an optional ``spatial`` directive
(factors + permutation + ``split``: the first ``split`` dims of the
permutation go to X, the rest to Y) and a ``bypass``/``datatype`` directive
(keep/bypass lists).  Unlisted factors are 1; unlisted data spaces are kept,
except at storage-less ``inter_*_spatial`` levels, which keep nothing.
"""
from __future__ import annotations

import dataclasses
import difflib
from typing import Iterable, Sequence

import numpy as np

from jaxloop.errors import SpecError
from jaxloop.spec import types as st
from jaxloop.structure import Structure
from jaxloop.types import FACTOR_DTYPE, Mapping


def _factor_dict(directive: st.Directive, structure: Structure,
                 path: str) -> dict[int, int]:
  out = {}
  for name, value in directive.factors or ():
    if name not in structure.dim_names:
      raise SpecError(f"unknown dim '{name}'", path=path + ".factors",
                      where=directive.where,
                      hint="Problem dims: " + ", ".join(structure.dim_names))
    out[structure.dim_names.index(name)] = int(value)
  return out


def _permutation(directive: st.Directive, structure: Structure,
                 path: str) -> list[int]:
  """Dim indices innermost first; unlisted dims follow, outermost."""
  listed = []
  for name in directive.permutation or ():
    if name not in structure.dim_names:
      raise SpecError(f"unknown dim '{name}' in permutation",
                      path=path + ".permutation", where=directive.where,
                      hint="Problem dims: " + ", ".join(structure.dim_names))
    d = structure.dim_names.index(name)
    if d not in listed:
      listed.append(d)
  return listed + [d for d in range(structure.num_dims) if d not in listed]


def mapping_from_directives(structure: Structure,
                            directives: Sequence[st.Directive],
                            source: str = "",
                            check_fanout: bool = False) -> Mapping:
  """Builds one Mapping (numpy arrays) from Timeloop mapping directives.

  Args:
    structure: the static structure the mapping is for.
    directives: the mapping's directives.
    source: files to name in messages when a directive has no location.
    check_fanout: reject spatial factors beyond a level's fan-out (as
      ``timeloop-model`` does); otherwise such a mapping is read and the
      model reports it invalid.

  Returns:
    ``[L, D]`` temporal / spatial X / spatial Y factors, ``[L, D]`` loop
    order (dim indices, innermost first) and ``[L, S]`` keep flags.

  Raises:
    SpecError: unknown level/dim/data space, factors that do not multiply
      to the problem bounds, bypass at the outermost level, data kept at a
      storage-less spatial level, or (``check_fanout``) spatial factors that
      exceed the fan-out.
  """
  where_first = next((d.where for d in directives if d.where), source)
  nest = _LoopNest.empty(structure)
  for k, d in enumerate(directives):
    path = f"mapping[{k}]"
    lvl = _target_level(structure, d, path, source)
    if d.type == "temporal":
      nest.set_temporal(structure, lvl, d, path)
    elif d.type == "spatial":
      nest.set_spatial(structure, lvl, d, path)
      if check_fanout:
        _check_fanout(structure, lvl, nest.spatial_x[lvl],
                      nest.spatial_y[lvl], d, path)
    elif d.type == "bypass":
      nest.set_keep(structure, lvl, d, path)
    # utilization/parallelism directives constrain the mapper only.
  _check_keep(structure, nest.keep, nest.keep_where, where_first)
  _check_factor_products(structure, nest, where_first)
  # Every factor now divides its dim's bound (below 2**30).
  return Mapping(temporal=nest.temporal.astype(FACTOR_DTYPE),
                 spatial_x=nest.spatial_x.astype(FACTOR_DTYPE),
                 spatial_y=nest.spatial_y.astype(FACTOR_DTYPE),
                 order=nest.order, keep=nest.keep)


@dataclasses.dataclass
class _LoopNest:
  """The arrays a mapping's directives fill in, level by level.

  Attributes:
    temporal, spatial_x, spatial_y: ``[L, D]`` int64 loop factors (1 where
      no directive sets one).
    order: ``[L, D]`` int32 temporal permutation, innermost first.
    keep: ``[L, S]`` bool: the level stores the data space.
    setters: per dim, ``(level label, factor, where)`` of each directive that
      sets a factor (for messages).
    keep_where: ``(level, data space) -> (path, where)`` of the directive
      that set the keep flag (for messages).
  """
  temporal: np.ndarray
  spatial_x: np.ndarray
  spatial_y: np.ndarray
  order: np.ndarray
  keep: np.ndarray
  setters: list[list[tuple[str, int, str]]]
  keep_where: dict

  @classmethod
  def empty(cls, structure: Structure) -> "_LoopNest":
    """Factors 1, dims in problem order, every data space kept except at
    storage-less levels."""
    L, D = structure.num_levels, structure.num_dims
    return cls(
        temporal=np.ones((L, D), np.int64),
        spatial_x=np.ones((L, D), np.int64),
        spatial_y=np.ones((L, D), np.int64),
        order=np.tile(np.arange(D, dtype=np.int32), (L, 1)),
        keep=np.array([[not dummy] * structure.num_dataspaces
                       for dummy in structure.is_dummy], bool),
        setters=[[] for _ in range(D)], keep_where={})

  def set_temporal(self, structure: Structure, lvl: int, d: st.Directive,
                   path: str) -> None:
    """A ``temporal`` directive: factors and (if given) the permutation."""
    for dim, v in _factor_dict(d, structure, path).items():
      self.temporal[lvl, dim] = v
      self.setters[dim].append((d.target, v, d.where))
    if d.permutation is not None:
      self.order[lvl] = _permutation(d, structure, path)

  def set_spatial(self, structure: Structure, lvl: int, d: st.Directive,
                  path: str) -> None:
    """A ``spatial`` directive: the first ``split`` permutation dims fan out
    along X, the rest along Y."""
    factors = _factor_dict(d, structure, path)
    perm = _permutation(d, structure, path)
    split = len(perm) if d.split is None else int(d.split)
    for pos, dim in enumerate(perm):
      v = factors.get(dim, 1)
      if pos < split:
        self.spatial_x[lvl, dim] = v
      else:
        self.spatial_y[lvl, dim] = v
      if dim in factors:
        self.setters[dim].append((d.target + " (spatial)", v, d.where))

  def set_keep(self, structure: Structure, lvl: int, d: st.Directive,
               path: str) -> None:
    """A ``bypass``/``datatype`` directive: keep and bypass lists."""
    for names, value in ((d.keep, True), (d.bypass, False)):
      for name in names or ():
        self.keep[lvl, structure.dataspace_index(name, path, d.where)] = value
        self.keep_where[(lvl, name)] = (path, d.where)


def _target_level(structure: Structure, d: st.Directive, path: str,
                  source: str) -> int:
  """Index of the storage level a directive targets."""
  if d.target not in structure.level_names:
    close = difflib.get_close_matches(d.target, structure.level_names, 1)
    raise SpecError(
        f"target '{d.target}' is not a storage level",
        path=path + ".target", where=d.where or source,
        hint=(f"Did you mean '{close[0]}'? " if close else "")
        + "Levels: " + ", ".join(reversed(structure.level_names)))
  return structure.level_names.index(d.target)


def _check_factor_products(structure: Structure, nest: _LoopNest,
                           where: str) -> None:
  """Each dim's temporal and spatial factors over all levels multiply to its
  bound (Timeloop's perfect factorization)."""
  for dim, (name, bound) in enumerate(zip(structure.dim_names,
                                          structure.dim_bounds)):
    total = 1  # Python ints: no overflow whatever the factors
    for l in range(structure.num_levels):
      total *= int(nest.temporal[l, dim]) * int(nest.spatial_x[l, dim]) * \
          int(nest.spatial_y[l, dim])
    if total == bound:
      continue
    setters = nest.setters[dim]
    parts = [f"{t} {name}={v}" for t, v, _ in setters if v != 1]
    given = " x ".join(parts) if parts else "no factor > 1"
    at = next((w for _, v, w in setters if v != 1 and w), where)
    raise SpecError(
        f"factors of dim '{name}' multiply to {total} ({given}), "
        f"expected the problem bound {bound}",
        path=f"mapping (factors of {name})", where=at,
        hint="Give every level's factor for this dim so that their product "
        "equals the bound (imperfect factorization is not supported).")


def _check_fanout(structure: Structure, lvl: int, sx: np.ndarray,
                  sy: np.ndarray, d: st.Directive, path: str) -> None:
  """Spatial factors must fit the physical fan-out below the level."""
  fx, fy = structure.fanout_x[lvl], structure.fanout_y[lvl]
  px, py = int(np.prod(sx)), int(np.prod(sy))
  if px <= fx and py <= fy:
    return
  name = structure.level_names[lvl]
  if fx * fy == 1:
    raise SpecError(
        f"expected spatial factors of 1 at '{name}', which has no fan-out "
        f"(one child instance), found factors using {px * py} instances",
        path=path + ".factors", where=d.where,
        hint="Put spatial factors on the level above a spatial container "
        "(e.g. the inter_*_spatial level of a container with meshX/meshY).")
  raise SpecError(
      f"expected spatial factors within the {fx} x {fy} (X x Y) fan-out of "
      f"'{name}', found {px} x {py}",
      path=path + ".factors", where=d.where,
      hint="Reduce the spatial factors, or move dims between X and Y with "
      "'split' (the first 'split' permutation dims go to X).")


def _check_keep(structure: Structure, keep: np.ndarray, keep_where: dict,
                where: str) -> None:
  """The outermost level keeps everything; spatial containers keep nothing."""
  top = structure.num_levels - 1
  for s, name in enumerate(structure.dataspace_names):
    if not keep[top, s]:
      path, at = keep_where.get((top, name), ("mapping", where))
      raise SpecError(
          f"expected the outermost level '{structure.level_names[top]}' to "
          f"keep every data space, found '{name}' bypassed",
          path=path + ".bypass", where=at,
          hint=f"Remove '{name}' from the bypass list of "
          f"'{structure.level_names[top]}'; the backing store holds all "
          "data.")
  for lvl, dummy in enumerate(structure.is_dummy):
    if not dummy:
      continue
    for s, name in enumerate(structure.dataspace_names):
      if keep[lvl, s]:
        path, at = keep_where.get((lvl, name), ("mapping", where))
        raise SpecError(
            f"expected the spatial container level "
            f"'{structure.level_names[lvl]}' to keep nothing (it has no "
            f"storage), found '{name}' kept",
            path=path + ".keep", where=at,
            hint=f"Keep '{name}' in a buffer component instead.")


def directives_from_mapping(structure: Structure, mapping: Mapping,
                            spatial_order=None) -> list[dict]:
  """Timeloop-format mapping list (outermost level first) for one mapping.

  Args:
    structure: the static structure.
    mapping: one mapping (``[L, D]`` / ``[L, S]`` fields).
    spatial_order: optional, per level, the spatial loops' dim order
      (innermost first) or None.  The mapping arrays carry no spatial
      permutation; by default the X dims come in dim order, then the Y
      dims.  Passing the spec's order (:func:`jaxloop.outputs.spatial_orders`)
      rewrites a mapping read from a file with its own permutations.
  """
  m = {k: np.asarray(v) for k, v in vars(mapping).items()}
  out = []
  names = structure.dim_names

  def fstr(row, dims):
    return " ".join(f"{names[d]}{int(row[d])}" for d in dims)

  def dims_text(perm):
    return ("".join(names[d] for d in perm)
            if all(len(n) == 1 for n in names) else [names[d] for d in perm])

  for lvl in reversed(range(structure.num_levels)):
    target = structure.level_names[lvl]
    keep = [structure.dataspace_names[s]
            for s in range(structure.num_dataspaces) if m["keep"][lvl, s]]
    bypass = [structure.dataspace_names[s]
              for s in range(structure.num_dataspaces) if not m["keep"][lvl, s]]
    out.append({"target": target, "type": "datatype", "keep": keep,
                "bypass": bypass})
    # Timeloop expects a spatial directive at every level with a fan-out
    # (it warns and pads one otherwise) and rejects one elsewhere.
    fanout = structure.fanout_x[lvl] * structure.fanout_y[lvl] > 1
    if fanout or (m["spatial_x"][lvl] > 1).any() or \
        (m["spatial_y"][lvl] > 1).any():
      given = [] if spatial_order is None or spatial_order[lvl] is None \
          else [int(d) for d in spatial_order[lvl]]
      order = given + [d for d in range(len(names)) if d not in given]
      xs = [d for d in order if m["spatial_x"][lvl, d] > 1]
      ys = [d for d in order if d not in xs]
      perm = xs + ys
      factors = np.where(m["spatial_x"][lvl] > 1, m["spatial_x"][lvl],
                         m["spatial_y"][lvl])
      out.append({"target": target, "type": "spatial",
                  "factors": fstr(factors, range(len(names))),
                  "permutation": dims_text(perm),
                  "split": len(xs)})
    perm = [int(d) for d in m["order"][lvl]]
    out.append({"target": target, "type": "temporal",
                "factors": fstr(m["temporal"][lvl], range(len(names))),
                "permutation": dims_text(perm)})
  return out


def stack(mappings: Iterable[Mapping]) -> Mapping:
  """Stacks single mappings into a batch (leading B axis)."""
  ms = list(mappings)
  return Mapping(*(np.stack([getattr(m, f) for m in ms])
                   for f in ("temporal", "spatial_x", "spatial_y", "order",
                             "keep")))

