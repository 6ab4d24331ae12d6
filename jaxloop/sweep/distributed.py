"""A sweep over several processes (``jax.distributed``): each process
maps the points whose id is its index modulo the process count, then the
rows are allgathered and merged in point order, so every process holds
the table a single process would have written.
"""
from __future__ import annotations

import json

import numpy as np

from jaxloop.sweep.run import SweepResult


def _bytes(obj) -> np.ndarray:
  return np.frombuffer(json.dumps(obj).encode(), dtype=np.uint8)


def allgather_rows(result: SweepResult) -> SweepResult:
  """Every process's rows, merged by point id (JSON over
  ``multihost_utils.process_allgather``: floats round-trip exactly)."""
  from jax.experimental import multihost_utils
  mine = _bytes({"points": result.points, "layers": result.layers,
                 "info": result.info})
  sizes = np.asarray(multihost_utils.process_allgather(
      np.asarray([mine.size], np.int64))).reshape(-1)
  padded = np.zeros(int(sizes.max()), np.uint8)
  padded[:mine.size] = mine
  everyone = np.asarray(multihost_utils.process_allgather(padded))
  parts = [json.loads(everyone[p, :sizes[p]].tobytes().decode())
           for p in range(len(sizes))]
  return merge_parts(parts)


def merge_parts(parts) -> SweepResult:
  """One :class:`SweepResult` from the processes' ``{"points", "layers",
  "info"}`` parts: rows in point order (layers in their order)."""
  points = sorted((r for p in parts for r in p["points"]),
                  key=lambda r: r["id"])
  order = {}
  for p in parts:
    for r in p["layers"]:
      order.setdefault(r["layer"], len(order))
  layers = sorted((r for p in parts for r in p["layers"]),
                  key=lambda r: (r["id"], order[r["layer"]]))
  info = dict(parts[0]["info"])
  info["processes"] = len(parts)
  info["points"] = len(points)
  info["compiles_per_process"] = [p["info"]["compiles"] for p in parts]
  info["seconds_per_process"] = [p["info"]["seconds"] for p in parts]
  return SweepResult(points, layers, info)
