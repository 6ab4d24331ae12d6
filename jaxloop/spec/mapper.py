"""Reads the ``mapper:`` section into a :class:`MapperConfig`."""
from __future__ import annotations

from typing import Optional

from jaxloop.spec import yamlio
from jaxloop.spec.diagnostics import describe, fail, join, require_mapping
from jaxloop.spec.types import MapperConfig

def parse_mapper(node: object, path: str = "mapper") -> MapperConfig:
  """Builds a MapperConfig; every item is also kept in ``raw``.

  ``optimization_metrics`` wins over the legacy ``optimization_metric``
  when both are given and non-empty.
  """
  node = require_mapping(node, path=path)
  metrics = node.get("optimization_metrics") or \
      node.get("optimization_metric") or ["edp"]
  key = "optimization_metrics" if node.get("optimization_metrics") else \
      "optimization_metric"
  if isinstance(metrics, str):
    metrics = [metrics]
  if not isinstance(metrics, list) or not all(isinstance(m, str)
                                              for m in metrics):
    raise fail(f"expected a list of metric names, found {describe(metrics)}",
               path=join(path, key), node=node, key=key)
  return MapperConfig(
      optimization_metrics=tuple(metrics),
      algorithm=_str(node, "algorithm", "random", path),
      timeout=_int(node, "timeout", 0, path),
      victory_condition=_int(node, "victory_condition", 0, path),
      search_size=_int(node, "search_size", None, path),
      num_threads=_int(node, "num_threads", 1, path),
      max_permutations_per_if_visit=_int(
          node, "max_permutations_per_if_visit", 16, path),
      raw=yamlio.plain(node))


def _int(node: dict, key: str, default: Optional[int], path: str):
  value = node.get(key)
  if value is None:
    return default
  if isinstance(value, bool) or not isinstance(value, int) or value < 0:
    raise fail(f"expected a non-negative integer, found {describe(value)}",
               path=join(path, key), node=node, key=key)
  return value


def _str(node: dict, key: str, default: str, path: str) -> str:
  value = node.get(key)
  if value is None:
    return default
  if not isinstance(value, str):
    raise fail(f"expected a name, found {describe(value)}",
               path=join(path, key), node=node, key=key)
  return value
