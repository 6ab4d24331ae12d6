"""The ``mapper:`` section of Timeloop inputs as jaxloop search settings.

:func:`jaxloop.mapper.search` takes its defaults from here; arguments (and
``jaxloop map``'s options) override them.

``algorithm`` (Timeloop's ``src/search/*.cpp`` at NVlabs/timeloop 0fc43fb)
-> jaxloop method:

* ``exhaustive``, ``linear_pruned`` -> ``exhaustive``.  Both walk the
  mapspace linearly (index factorizations outermost, then loop
  permutations, spatial choices, bypass innermost); ``linear_pruned`` skips
  the permutations that differ only in where loops of factor 1 go.
  jaxloop's enumeration is that pruned walk, in the same nesting, so the
  two reach the same optimum; with ``timeout``/``victory_condition`` 0 and
  no ``search_size`` it covers the whole space (``result.complete``).
* ``random``, ``random_pruned`` -> ``random``.  Both draw random points of
  the space.  Timeloop's ``random`` draws a factorization, permutation and
  spatial choice and then visits every bypass choice for it;
  ``random_pruned`` visits up to ``max_permutations_per_if_visit`` random
  permutations of each drawn factorization.  jaxloop draws every choice
  independently and uniformly; ``max_permutations_per_if_visit`` is not
  used.
* ``hybrid`` (Timeloop's default) -> ``evolve``.  Timeloop's hybrid draws
  a random factorization and walks its pruned permutations, spatial and
  bypass choices linearly: random restarts with local exploration around
  each.  jaxloop's ``evolve`` is the batched analogue: random starts,
  local moves around the best mappings (prime re-splits, loop swaps,
  bypass flips) and restarts when a population stalls.  (jaxloop's own
  ``hybrid`` method, gradient descent seeding evolve, is another search.)

``timeout``, ``victory_condition``, ``search_size``,
``penalize_consecutive_bypass_fails`` and ``max_temporal_loops_in_a_mapping``
become :class:`~jaxloop.mapper.rules.StopRules` (their meaning is in
:mod:`jaxloop.mapper.rules`).  ``optimization_metric(s)`` is the objective
(:mod:`jaxloop.mapper.objective`).  Timeloop 0fc43fb reads a *list* under
the legacy ``optimization_metric`` key as no metric at all and optimizes
``edp`` (its ``lookupValue`` only takes a scalar there); jaxloop takes the
list, as the tutorials that use it intend.

:func:`unused_settings` names the settings that ask for something jaxloop
does not do (threads, logs, live status, diagnostics, ...).
"""
from __future__ import annotations

from typing import Optional

from jaxloop.mapper.rules import StopRules

# Timeloop's search algorithms -> jaxloop's methods (reasons above).
ALGORITHM_METHODS = {"exhaustive": "exhaustive",
                     "linear_pruned": "exhaustive",
                     "random": "random", "random_pruned": "random",
                     "hybrid": "evolve"}

# Settings jaxloop follows (the others are named by unused_settings).
HONOURED = ("version", "algorithm", "optimization_metric",
            "optimization_metrics", "timeout", "heartbeat",
            "victory_condition", "search_size",
            "penalize_consecutive_bypass_fails",
            "max_temporal_loops_in_a_mapping")

_LOGS = "progress.csv logs the best mapping after every batch instead"
# setting -> (asks for something?, why jaxloop does not do it).
_NOT_USED = {
    "num_threads": (
        lambda v, m: isinstance(v, int) and v > 1,
        "jaxloop runs one search, batched; victory_condition and timeout "
        "count as in one Timeloop thread and search_size counts the whole "
        "search"),
    "sync_interval": (lambda v, m: bool(v),
                      "jaxloop runs no threads to synchronise"),
    "max_permutations_per_if_visit": (
        lambda v, m: m.algorithm == "random_pruned",
        "random_pruned runs as jaxloop's random search, which draws every "
        "mapping's factorization, loop orders and bypass independently"),
    "filter_revisits": (
        lambda v, m: bool(v),
        "jaxloop's random search may draw a mapping again"),
    "log_interval": (lambda v, m: v not in (None, 1), _LOGS),
    "live_status": (lambda v, m: bool(v),
                    "jaxloop shows a progress bar on a terminal instead"),
    "diagnostics": (lambda v, m: bool(v),
                    "jaxloop does not collect why mappings fail"),
    "emit_whoop_nest": (lambda v, m: bool(v),
                        "jaxloop writes no Whoop loop nest"),
    "out_prefix": (
        lambda v, m: v not in (None, "timeloop-mapper"),
        "jaxloop writes map.yaml, stats.json, stats.txt and progress.csv "
        "in the output folder"),
}
for _key in ("log_stats", "log_suboptimal", "log_all", "log_oaves",
             "log_oaves_mappings", "log_oave_mappings", "log_all_mappings",
             "log_mappings_yaml", "log_mappings_verbose"):
  _NOT_USED[_key] = (lambda v, m: bool(v), _LOGS)


def method_for(mapper) -> Optional[str]:
  """The jaxloop method for the files' ``mapper.algorithm`` (None without
  a ``mapper:`` section)."""
  return None if mapper is None else ALGORITHM_METHODS[mapper.algorithm]


def stop_rules(mapper, *, victory: Optional[int] = None,
               timeout: Optional[int] = None,
               search_size: Optional[int] = None) -> StopRules:
  """Timeloop's rules from the files' ``mapper:`` section (all off without
  one); ``victory``, ``timeout`` and ``search_size`` override it when not
  None (0: off).

  Raises:
    ValueError: a negative override.
  """
  for name, value in (("victory", victory), ("timeout", timeout),
                      ("search_size", search_size)):
    if value is not None and (isinstance(value, bool) or int(value) < 0):
      raise ValueError(f"{name} must be a non-negative integer, got "
                       f"{value!r}")
  raw = dict(mapper.raw) if mapper is not None else {}
  base = StopRules() if mapper is None else StopRules(
      victory=mapper.victory_condition, timeout=mapper.timeout,
      search_size=mapper.search_size or 0,
      penalize_bypass_fails=bool(
          raw.get("penalize_consecutive_bypass_fails")),
      max_temporal_loops=max(
          int(raw.get("max_temporal_loops_in_a_mapping") or 0), 0))
  pick = lambda given, file: file if given is None else int(given)
  return StopRules(victory=pick(victory, base.victory),
                   timeout=pick(timeout, base.timeout),
                   search_size=pick(search_size, base.search_size),
                   penalize_bypass_fails=base.penalize_bypass_fails,
                   max_temporal_loops=base.max_temporal_loops)


def unused_settings(mapper) -> list[tuple[str, str]]:
  """``[(setting, why), ...]``: the settings of the ``mapper:`` section
  that ask for something jaxloop does not do (left at their defaults, they
  ask for nothing and are not listed)."""
  if mapper is None:
    return []
  out = []
  for key, value in mapper.raw:
    if key in HONOURED:
      continue
    if key in _NOT_USED:
      asks, why = _NOT_USED[key]
      if asks(value, mapper):
        out.append((key, why))
    elif value not in (None, False, 0, "", ()):
      out.append((key, "not a Timeloop mapper setting jaxloop knows"))
  return out
