"""A whole sweep: points x layers, grouped by structure, rows out.

:func:`run_sweep` loads every point's architecture once (its ArchParams:
energies and areas from the ERT/ART or the built-in estimator,
capacities, bandwidths), groups the points whose structure and
constraints agree, and for each distinct layer runs
:func:`jaxloop.sweep.search.search_points` on each group: the group's
points are evaluated together (one program per group and layer however
many points).  ``part=(i, n)`` keeps the points whose id is ``i`` modulo
``n`` (one process of a distributed sweep).
"""
from __future__ import annotations

import dataclasses
import hashlib
import time
import warnings
from typing import Optional, Sequence

import jax
import numpy as np

from jaxloop.errors import spec_warnings
from jaxloop.precision import exact
from jaxloop.sweep import batched
from jaxloop.sweep.arch import point_workload
from jaxloop.sweep.layers import Layer
from jaxloop.sweep.search import SearchSettings, search_points
from jaxloop.types import edp


@dataclasses.dataclass
class SweepResult:
  """Rows of a sweep (plain dicts, JSON-safe values).

  Attributes:
    points: one row per point: its id, axis values, network totals
      (``energy_pj``, ``cycles``, ``edp``), ``area_um2``, ``valid``,
      ``group`` (a tag of the point's structure) and ``energy_pj.<level>`` per level.
    layers: one row per (point, distinct layer): ``id``, ``layer``,
      ``repeat``, the layer's best mapping's ``energy_pj``, ``cycles``,
      ``edp``, ``utilization``, ``valid`` and per-level energies.
    info: counts and timings (``compiles``, ``seconds``, ``groups``...).
  """
  points: list
  layers: list
  info: dict


def _load_points(arch_files, first: Optional[Layer], points, ids, strict):
  """Workloads of the points (on the first layer); input warnings issued
  once (for the first point), not once per point."""
  out = []
  for k, i in enumerate(ids):
    path = None if first is None else first.path
    if k == 0:
      out.append(point_workload(arch_files, path, points[i], strict))
      continue
    with warnings.catch_warnings():
      warnings.simplefilter("ignore")
      out.append(point_workload(arch_files, path, points[i], strict))
  return out


def _groups(workloads, ids) -> list[list[int]]:
  """Positions of ``workloads`` grouped by (structure, constraints), in
  order of first appearance."""
  groups: dict = {}
  for k, wl in enumerate(workloads):
    groups.setdefault((wl.structure, wl.spec.constraints), []).append(k)
  return list(groups.values())


def structure_tag(structure) -> str:
  """A short name of a structure, the same in every process."""
  return hashlib.sha1(repr(structure).encode()).hexdigest()[:8]


def _layer_row(structure, stats, k: int, layer: Layer, pid: int) -> dict:
  e, c = float(stats.energy_total[k]), float(stats.cycles[k])
  row = {"id": pid, "layer": layer.name, "repeat": layer.repeat,
         "energy_pj": e, "cycles": c, "edp": float(edp(e, c)),
         "utilization": float(stats.utilization[k]),
         "valid": bool(stats.valid[k]), "area_um2": float(stats.area[k])}
  for name, v in zip(structure.level_names, stats.level_energy[k]):
    row[f"energy_pj.{name}"] = float(v)
  row["energy_pj.compute"] = float(stats.compute_energy[k])
  return row


def _point_row(point: dict, pid: int, group: str, rows: list) -> dict:
  """Network totals of one point: repeat-weighted sums of its layers."""
  energy = sum(r["energy_pj"] * r["repeat"] for r in rows)
  cycles = sum(r["cycles"] * r["repeat"] for r in rows)
  out = {"id": pid, **point, "group": group,
         "valid": all(r["valid"] for r in rows), "energy_pj": energy,
         "cycles": cycles, "edp": float(edp(energy, cycles)),
         "area_um2": rows[0]["area_um2"]}
  for key in rows[0]:
    if key.startswith("energy_pj."):
      out[key] = sum(r[key] * r["repeat"] for r in rows)
  return out


@exact
def run_sweep(arch_files: Sequence[str], points: Sequence[dict],
              layers: Sequence[Layer], settings: SearchSettings,
              part: tuple[int, int] = (0, 1), strict: bool = False,
              devices: Optional[Sequence] = None,
              progress=None) -> SweepResult:
  """Maps every layer on every point of this part; see the module doc.

  Args:
    arch_files: architecture files (and ERT/ART, constraints, templates).
    points: every point of the sweep (dicts, see :mod:`.points`).
    layers: the distinct layers (a ``Layer(path=None)`` when the files
      hold the problem).
    settings: search budget, objective, seed.
    part: ``(index, count)``: this process's share of the points.
    devices: devices the points are split over (default all local).
    progress: ``fn(message)`` called after each (group, layer), or None.
  """
  t0 = time.perf_counter()
  devices = tuple(jax.local_devices() if devices is None else devices)
  ids = [i for i in range(len(points)) if i % part[1] == part[0]]
  with spec_warnings(strict):
    wls = _load_points(arch_files, layers[0], points, ids, strict)
  t_load = time.perf_counter() - t0
  layer_rows: dict[int, list] = {i: [] for i in ids}
  groups = _groups(wls, ids)
  for gi, members in enumerate(groups):
    params = [wls[k].params for k in members]
    mids = [ids[k] for k in members]
    for li, layer in enumerate(layers):
      rep = wls[members[0]] if li == 0 else _rep(
          arch_files, layer, points[mids[0]], strict, quiet=gi > 0)
      _, stats = search_points(rep.mapspace, params, mids, li, settings,
                               devices)
      for k, pid in enumerate(mids):
        layer_rows[pid].append(_layer_row(rep.structure, stats, k, layer,
                                          pid))
      if progress:
        progress(f"group {gi + 1}/{len(groups)} ({len(members)} points), "
                 f"layer {layer.name} ({li + 1}/{len(layers)}), "
                 f"{time.perf_counter() - t0:.1f} s")
  group_of = {ids[k]: structure_tag(wls[m[0]].structure)
              for m in groups for k in m}
  point_rows = [_point_row(points[i], i, group_of[i], layer_rows[i])
                for i in ids]
  info = {"points": len(ids), "layers": len(layers),
          "groups": len(groups), "compiles": batched.compiles(),
          "load_seconds": t_load,
          "seconds": time.perf_counter() - t0}
  return SweepResult(point_rows, [r for i in ids for r in layer_rows[i]],
                     info)


def _rep(arch_files, layer: Layer, point: dict, strict: bool, quiet: bool):
  """The workload of ``layer`` on ``point`` (the structure and mapspace of
  that layer for the point's group); ``quiet``: input warnings (already
  issued for the first group) left out."""
  if not quiet:
    return point_workload(arch_files, layer.path, point, strict)
  with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    return point_workload(arch_files, layer.path, point, strict)
