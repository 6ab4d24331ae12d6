"""``jaxloop map``: search the mapspace, write map.yaml and progress.csv.

The caller (``jaxloop.cli``) registers the options with
:func:`add_map_arguments` and writes stats.json/stats.txt from what
:func:`run_map` returns.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

import yaml

from jaxloop.mapping import directives_from_mapping
from jaxloop.mapspace import Mapspace
from jaxloop.search import SEARCHES
from jaxloop.spec import load_spec
from jaxloop.structure import build_params, build_structure

# ``auto`` searches exhaustively up to this many mappings.
AUTO_EXHAUSTIVE_LIMIT = 2_000_000
DEFAULT_TIME_LIMIT = 60.0


def add_map_arguments(parser: argparse.ArgumentParser) -> None:
  """Registers the ``map`` options on ``parser``."""
  parser.add_argument("files", nargs="+",
                      help="Timeloop YAML inputs (arch, problem, constraints, "
                      "mapper, ERT/ART)")
  parser.add_argument("-o", "--output", required=True,
                      help="output folder (map.yaml, progress.csv)")
  parser.add_argument("--time-limit", type=float, default=None,
                      help="search time in seconds (default 60 when no "
                      "--budget)")
  parser.add_argument("--budget", type=int, default=None,
                      help="number of mappings to evaluate")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--objective", default=None,
                      help="energy, delay, edp or a lexicographic list such "
                      "as 'delay,energy' (default: the spec's "
                      "optimization_metrics, else edp)")
  parser.add_argument("--search", default="auto",
                      choices=("auto", "random", "exhaustive", "evolve",
                               "gradient", "hybrid"),
                      help="gradient: multi-start gradient descent on the "
                      "relaxed model; hybrid: gradient seeds for evolve")


def run_map(args: argparse.Namespace):
  """Runs the search the options ask for.

  Returns:
    ``(structure, params, mapping, stats)``: the best mapping (single, numpy)
    and its Stats (single, numpy).

  Raises:
    SpecError: bad inputs, or no legal mapping was found.
  """
  from jaxloop.errors import SpecError
  spec = load_spec(*args.files)
  structure = build_structure(spec)
  params = build_params(spec, structure)
  ms = Mapspace.from_spec(spec, structure)
  objective = args.objective
  if objective is None:
    metrics = spec.mapper.optimization_metrics if spec.mapper else ()
    objective = list(metrics) or "edp"
  kind = args.search
  if kind == "auto":
    kind = ("exhaustive" if ms.size()["total"] <= AUTO_EXHAUSTIVE_LIMIT
            else "evolve")
  time_limit = args.time_limit
  if time_limit is None and args.budget is None and kind != "exhaustive":
    time_limit = DEFAULT_TIME_LIMIT
  if kind in ("gradient", "hybrid"):
    from jaxloop.search import gradient
    search = (gradient.gradient_search if kind == "gradient"
              else gradient.hybrid_search)
  else:
    search = SEARCHES[kind]
  result = search(spec, budget=args.budget, time_limit=time_limit,
                          seed=args.seed, objective=objective,
                          params=params, mapspace=ms)
  out = Path(args.output)
  os.makedirs(out, exist_ok=True)
  (out / "progress.csv").write_text(result.log_csv())
  if result.best_mapping is None:
    raise SpecError(
        f"no legal mapping found among {result.evaluated} evaluated",
        path="mapper", where=", ".join(spec.sources),
        hint="Give the search more time, or relax the constraints.")
  with open(out / "map.yaml", "w") as f:
    yaml.safe_dump({"mapping": directives_from_mapping(
        structure, result.best_mapping)}, f, sort_keys=False)
  return structure, params, result.best_mapping, result.best_stats
