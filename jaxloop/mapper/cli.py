"""``jaxloop map``: search the mapspace, write map.yaml and progress.csv.

The caller (``jaxloop.cli``) registers the options with
:func:`add_map_arguments`, calls :func:`run_map` and writes
stats.json/stats.txt from what it returns.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Optional, Sequence

import yaml

from jaxloop.api import load
from jaxloop.errors import SpecError
from jaxloop.mapping import directives_from_mapping
from jaxloop.mapper import ALIASES, DEFAULT_TIME_LIMIT, METHODS, search
from jaxloop.mapper.objective import Objective
from jaxloop.mapper.settings import unused_settings


def add_map_arguments(parser: argparse.ArgumentParser) -> None:
  """Registers the ``map`` options on ``parser``."""
  parser.add_argument("files", nargs="+",
                      help="Timeloop YAML inputs (arch, problem, constraints, "
                      "mapper, ERT/ART)")
  parser.add_argument("-o", "--output", required=True,
                      help="output folder (map.yaml, progress.csv)")
  parser.add_argument("--time-limit", type=float, default=None,
                      help=f"search time in seconds (default "
                      f"{DEFAULT_TIME_LIMIT:g} when nothing else ends the "
                      "search: no --budget, no mapper.victory_condition or "
                      "search_size; an exhaustive search runs to the end)")
  parser.add_argument("--budget", type=int, default=None,
                      help="number of mappings to evaluate")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--objective", default=None,
                      help="energy, delay, edp or a lexicographic list such "
                      "as 'delay,energy' (default: the spec's "
                      "optimization_metrics, else edp)")
  parser.add_argument("--search", default=None,
                      choices=METHODS + tuple(ALIASES),
                      help="default: the spec's mapper.algorithm "
                      "(exhaustive/linear_pruned: exhaustive, random/"
                      "random_pruned: random, hybrid: evolve), else auto; "
                      "auto: exhaustive for small mapspaces, else "
                      "evolve; gradient: multi-start gradient descent on the "
                      "relaxed model; hybrid: gradient seeds for evolve; "
                      "proof (optimal): the certified optimum by branch and "
                      "bound, or the gap to its bound at the time limit")
  parser.add_argument("--policy", default=None,
                      help="--search learned: the policy checkpoint "
                      "(jaxloop.research.policy.save; default: the bundled "
                      "one)")
  parser.add_argument("--victory", type=int, default=None,
                      help="stop after N legal mappings in a row that do not "
                      "improve the best (Timeloop's victory_condition; 0: "
                      "off; default: the mapper section's)")
  parser.add_argument("--timeout", type=int, default=None,
                      help="stop after N illegal mappings in a row "
                      "(Timeloop's timeout; 0: off; default: the mapper "
                      "section's)")
  parser.add_argument("--search-size", type=int, default=None,
                      help="stop after N legal mappings (Timeloop's "
                      "search_size; 0: off)")


def run_map(files: Sequence[str | os.PathLike], output: str | os.PathLike,
            *, method: Optional[str] = None,
            time_limit: Optional[float] = None,
            budget: Optional[int] = None, seed: int = 0,
            objective: Optional[Objective] = None,
            victory: Optional[int] = None, timeout: Optional[int] = None,
            search_size: Optional[int] = None,
            variables: Optional[dict] = None,
            started: Optional[float] = None,
            policy: Optional[str] = None):
  """Loads ``files``, searches, writes ``map.yaml`` and ``progress.csv`` to
  ``output``.

  The settings of the files' ``mapper:`` section that jaxloop does not
  follow are named on stderr, one line each
  (:func:`jaxloop.mapper.settings.unused_settings`).

  Args:
    files: Timeloop YAML inputs (architecture, problem, constraints, mapper,
      ERT/ART).
    output: folder (created).
    method, time_limit, budget, seed, objective, victory, timeout,
      search_size: as for :func:`jaxloop.mapper.search` (None: from the
      files' ``mapper:`` section).
    variables: the variables of the Jinja templates among ``files``.
    started: ``time.perf_counter()`` when the command started (default:
      when ``run_map`` is called).  ``time_limit`` bounds the time from
      there: what is spent before the search (reading the files, building
      the mapspace) is taken from the search's time and reported as
      ``result.startup``; the search still evaluates one batch when
      start-up alone used up the limit.
    policy: the checkpoint of ``--search learned``.

  Returns:
    ``(workload, result)``: the :class:`jaxloop.Workload` and the
    :class:`~jaxloop.mapper.SearchResult` (``best_mapping``/``best_stats``
    single, numpy).

  Raises:
    SpecError: bad inputs, or no legal mapping was found (``progress.csv``
      is written all the same).
  """
  if started is None:
    started = time.perf_counter()
  workload = load(*files, variables=variables)
  for key, why in unused_settings(workload.spec.mapper):
    print(f"jaxloop map: mapper.{key} is not used: {why}", file=sys.stderr)
  workload.mapspace.size()                # the mapspace, built once here
  startup = max(time.perf_counter() - started, 0.0)
  left = None if time_limit is None else max(time_limit - startup, 0.0)
  result = search(workload, method, objective=objective,
                  time_limit=left, budget=budget, seed=seed,
                  victory=victory, timeout=timeout, search_size=search_size,
                  **({"policy": policy} if policy else {}))
  result.startup = startup
  if time_limit is not None:
    result.time_limit = time_limit
  out = Path(output)
  out.mkdir(parents=True, exist_ok=True)
  (out / "progress.csv").write_text(result.log_csv())
  if result.best_mapping is None:
    raise SpecError(
        f"no legal mapping found among {result.evaluated} evaluated",
        path="mapper", where=workload.sources,
        hint="Give the search more time, or relax the constraints.")
  with open(out / "map.yaml", "w") as f:
    yaml.safe_dump({"mapping": directives_from_mapping(
        workload.structure, result.best_mapping)}, f, sort_keys=False)
  return workload, result
