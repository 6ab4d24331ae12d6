"""Reads the ``mapper:`` section into a :class:`MapperConfig`.

Keys and defaults follow Timeloop's mapper (``src/applications/mapper/
mapper.cpp`` and ``src/search/search-factory.cpp`` at NVlabs/timeloop
0fc43fb): a key that is absent or null takes Timeloop's default
(``algorithm: hybrid``, ``timeout: 1000``, ``victory_condition: 500``,
``search_size: 0``), hyphens in key names read as underscores, and the
legacy ``heartbeat`` stands for ``timeout``.  What jaxloop does with each
setting is :mod:`jaxloop.mapper.settings`.
"""
from __future__ import annotations

from typing import Optional

from jaxloop.spec import yamlio
from jaxloop.spec.diagnostics import (describe, fail, join, require_mapping,
                                      suggest)
from jaxloop.spec.types import MapperConfig

# Timeloop's search algorithms (search-factory.cpp).
ALGORITHMS = ("random", "exhaustive", "linear_pruned", "hybrid",
              "random_pruned")
# Timeloop's true/false settings (mapper.cpp, search/*.cpp).
FLAGS = ("penalize_consecutive_bypass_fails", "filter_revisits",
         "live_status", "diagnostics", "log_stats", "log_suboptimal",
         "log_all", "log_oaves", "log_oaves_mappings", "emit_whoop_nest")
DEFAULT_ALGORITHM = "hybrid"
DEFAULT_TIMEOUT = 1000
DEFAULT_VICTORY_CONDITION = 500


def parse_mapper(node: object, path: str = "mapper") -> MapperConfig:
  """Builds a MapperConfig; every item is also kept in ``raw`` (keys with
  hyphens spelled with underscores).

  ``optimization_metrics`` wins over the legacy ``optimization_metric``
  when both are given and non-empty.

  Raises:
    SpecError: a value of the wrong type, a negative count or an unknown
      algorithm.
  """
  node = require_mapping(node, path=path)
  metrics, key = ["edp"], "optimization_metrics"
  for name in ("optimization_metrics", "optimization_metric"):
    k = _key(node, name)
    if k is not None and node.get(k):
      metrics, key = node[k], k
      break
  if isinstance(metrics, str):
    metrics = [metrics]
  if not isinstance(metrics, list) or not all(isinstance(m, str)
                                              for m in metrics):
    raise fail(f"expected a list of metric names, found {describe(metrics)}",
               path=join(path, key), node=node, key=key)
  timeout_key = "timeout" if _key(node, "timeout") else "heartbeat"
  for flag in FLAGS:
    _bool(node, flag, path)
  _int(node, "max_temporal_loops_in_a_mapping", -1, path, minimum=-1)
  return MapperConfig(
      optimization_metrics=tuple(metrics),
      algorithm=_algorithm(node, path),
      timeout=_int(node, timeout_key, DEFAULT_TIMEOUT, path),
      victory_condition=_int(node, "victory_condition",
                             DEFAULT_VICTORY_CONDITION, path),
      search_size=_int(node, "search_size", None, path),
      num_threads=_int(node, "num_threads", 1, path),
      max_permutations_per_if_visit=_int(
          node, "max_permutations_per_if_visit", 16, path),
      raw=tuple((str(k).replace("-", "_"), v)
                for k, v in yamlio.plain(node)))


def _key(node: dict, name: str) -> Optional[str]:
  """The key of ``node`` spelled ``name`` or with hyphens, else None."""
  for k in (name, name.replace("_", "-")):
    if k in node:
      return k
  return None


def _algorithm(node: dict, path: str) -> str:
  key = _key(node, "algorithm")
  value = node.get(key) if key else None
  if value is None:
    return DEFAULT_ALGORITHM
  name = value.replace("-", "_") if isinstance(value, str) else value
  if name not in ALGORITHMS:
    raise fail(f"expected a Timeloop search algorithm, found "
               f"{describe(value)}", path=join(path, key), node=node,
               key=key, hint=suggest(value, ALGORITHMS) or
               f"Choose one of {', '.join(ALGORITHMS)}.")
  return name


def _int(node: dict, name: str, default: Optional[int], path: str,
         minimum: int = 0):
  key = _key(node, name)
  value = node.get(key) if key else None
  if value is None:
    return default
  if isinstance(value, bool) or not isinstance(value, int) or \
      value < minimum:
    what = "a non-negative integer" if minimum == 0 else \
        f"an integer >= {minimum}"
    raise fail(f"expected {what}, found {describe(value)}",
               path=join(path, key), node=node, key=key)
  return value


def _bool(node: dict, name: str, path: str) -> None:
  key = _key(node, name)
  value = node.get(key) if key else None
  if value is not None and not isinstance(value, bool):
    raise fail(f"expected true or false, found {describe(value)}",
               path=join(path, key), node=node, key=key)
