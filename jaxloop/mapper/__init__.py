"""Mapspace search: :func:`search`, one entry point for every method.

>>> result = jaxloop.mapper.search(workload, budget=20000)
>>> result.best_mapping, result.best_stats, result.topk

Methods (Timeloop's mapper searches, batched over the exact model):

* ``random``: uniform samples of the constrained mapspace;
* ``exhaustive``: every mapping (``result.complete`` when it got through);
* ``evolve``: evolutionary local search around the best mappings;
* ``gradient``: multi-start gradient descent on the relaxed model
  (:mod:`jaxloop.relax`), rounded to legal mappings;
* ``hybrid``: gradient seeds handed to evolve;
* ``learned``: a trained policy's samples seed evolve
  (:mod:`jaxloop.research.learned`; option ``policy``: a checkpoint);
* ``proof`` (alias ``optimal``): the certified optimum of the whole
  mapspace by branch and bound (:mod:`jaxloop.mapper.proof`);
* ``auto``: ``exhaustive`` when the mapspace holds at most
  :data:`AUTO_EXHAUSTIVE_LIMIT` mappings, else ``evolve``.

The files' ``mapper:`` section gives the defaults: its ``algorithm``
(``exhaustive``/``linear_pruned`` -> ``exhaustive``, ``random``/
``random_pruned`` -> ``random``, ``hybrid`` -> ``evolve``; reasons in
:mod:`jaxloop.mapper.settings`), its ``optimization_metrics`` and
Timeloop's stop rules ``search_size``, ``victory_condition`` and
``timeout`` (:mod:`jaxloop.mapper.rules`, applied row by row as a
one-mapping-at-a-time run would).  Arguments override them.

Every number a search reports is the exact model's, on a legal mapping.
"""
from __future__ import annotations

import inspect
from typing import Optional

from jaxloop.precision import exact
from jaxloop.mapper.driver import SearchResult
from jaxloop.mapper.gradient import gradient_search, hybrid_search
from jaxloop.mapper import settings
from jaxloop.mapper.objective import Objective, parse_objective
from jaxloop.mapper.proof import ProofResult, proof_search
from jaxloop.mapper.rules import StopRules
from jaxloop.mapper.searches import (evolve_search, exhaustive_search,
                                     random_search)
from jaxloop.research.learned import learned_search

SEARCHES = {"random": random_search, "exhaustive": exhaustive_search,
            "evolve": evolve_search, "gradient": gradient_search,
            "hybrid": hybrid_search, "learned": learned_search,
            "proof": proof_search}
# Other names of methods.
ALIASES = {"optimal": "proof"}
METHODS = ("auto",) + tuple(SEARCHES)

# ``auto`` searches exhaustively up to this many mappings.
AUTO_EXHAUSTIVE_LIMIT = 2_000_000
# Seconds a search runs when nothing else ends it (no budget, time limit,
# victory or search size; exhaustive searches run to the end instead).
DEFAULT_TIME_LIMIT = 60.0

# Arguments :func:`search` sets itself (not method options).
_COMMON = ("objective", "time_limit", "budget", "seed", "topk", "progress",
           "rules")
# Methods that pass their unnamed options on to another method.
_PASSES_OPTIONS_TO = {"hybrid": "gradient"}


@exact
def search(workload, method: Optional[str] = None, *,
           objective: Optional[Objective] = None,
           time_limit: Optional[float] = None, budget: Optional[int] = None,
           seed: int = 0, topk: int = 10, progress: bool = True,
           victory: Optional[int] = None, timeout: Optional[int] = None,
           search_size: Optional[int] = None,
           **options) -> SearchResult:
  """Searches ``workload``'s mapspace for the best mappings.

  Args:
    workload: a :class:`jaxloop.Workload` (its mapspace honours the
      constraints in its files).
    method: ``auto``, ``random``, ``exhaustive``, ``evolve``, ``gradient``,
      ``hybrid`` or ``proof`` (``optimal``) (see the module docstring); default: the files'
      ``mapper.algorithm`` (:data:`settings.ALGORITHM_METHODS`), else
      ``auto``.
    objective: ``energy``, ``delay``, ``edp`` or a lexicographic list such
      as ``"delay,energy"``; default: the files' ``mapper.
      optimization_metrics``, else ``edp``.
    time_limit: seconds.
    budget: model evaluations.  When nothing else ends it (no budget, time
      limit, victory or search size), a search other than ``exhaustive``
      stops after :data:`DEFAULT_TIME_LIMIT` seconds.
    seed: same seed and budget (no time limit), same result.
    topk: distinct best mappings returned.
    progress: a progress bar (on a terminal only).
    victory: stop after this many legal mappings in a row that do not
      improve the best (Timeloop's ``victory_condition``).
    timeout: stop after this many illegal mappings in a row (Timeloop's
      ``timeout``; a count, not seconds).
    search_size: stop after this many legal mappings (Timeloop's
      ``search_size``).  For these three, None takes the files' ``mapper:``
      section (Timeloop's defaults 500, 1000 and 0 where the section leaves
      them out; off without a section) and 0 turns the rule off.
    **options: options of the method, e.g. ``batch``, ``params`` (all);
      ``population``, ``patience`` (evolve); ``starts``, ``steps``, ``lr``
      (gradient, hybrid); :func:`method_options` lists them.

  Returns:
    :class:`SearchResult`: the best mapping and its Stats (None if nothing
    legal was found), the top-k, counts, the stop reason and the progress
    log.

  Raises:
    ValueError: an unknown method or a negative rule.
    TypeError: an option the method does not take.
    SpecError: an unknown objective metric.
  """
  mapper = workload.spec.mapper
  if method is None:
    method = settings.method_for(mapper) or "auto"
  method = resolve_method(workload, method)
  unknown = sorted(set(options) - set(method_options(method)))
  if unknown:
    raise TypeError(
        f"search method '{method}' takes no option {', '.join(unknown)}; "
        f"its options: {', '.join(method_options(method))}")
  if objective is None:
    objective = list(mapper.optimization_metrics if mapper else ()) or "edp"
  rules = settings.stop_rules(mapper, victory=victory, timeout=timeout,
                              search_size=search_size)
  if (time_limit is None and budget is None
      and method not in ("exhaustive", "proof")
      and not rules.can_stop):
    time_limit = DEFAULT_TIME_LIMIT
  return SEARCHES[method](workload, objective=parse_objective(objective),
                          time_limit=time_limit, budget=budget, seed=seed,
                          topk=topk, progress=progress, rules=rules,
                          **options)


def resolve_method(workload, method: str) -> str:
  """``method``, with ``auto`` replaced by the method it picks for
  ``workload``.

  Raises:
    ValueError: not one of :data:`METHODS`.
  """
  method = ALIASES.get(method, method)
  if method not in METHODS:
    raise ValueError(f"unknown search method '{method}'; choose one of "
                     f"{', '.join(METHODS)}")
  if method != "auto":
    return method
  size = workload.mapspace.size()["total"]
  return "exhaustive" if size <= AUTO_EXHAUSTIVE_LIMIT else "evolve"


def method_options(method: str) -> tuple[str, ...]:
  """The ``**options`` :func:`search` accepts for ``method``."""
  params = inspect.signature(SEARCHES[method]).parameters
  names = [n for n, p in params.items()
           if p.kind is inspect.Parameter.KEYWORD_ONLY and n not in _COMMON]
  if method in _PASSES_OPTIONS_TO:
    names += [n for n in method_options(_PASSES_OPTIONS_TO[method])
              if n not in names]
  return tuple(names)


__all__ = ["search", "SearchResult", "StopRules", "SEARCHES", "METHODS",
           "AUTO_EXHAUSTIVE_LIMIT", "DEFAULT_TIME_LIMIT", "method_options",
           "resolve_method", "parse_objective"]
