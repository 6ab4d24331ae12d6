"""``jaxloop sweep``: map a network (or one problem) on many architectures.

    jaxloop sweep ARCH_FILES... [--layers PATH...] -o OUT
        --grid NAME=v1,v2,...   (repeatable; all combinations)
        --range NAME=LO:HI[:log] with --random N | --lhs N
        [--budget N] [--objective edp|energy|delay] [--seed N]
        [--points-per-call N] [--var NAME=VALUE]
        [--coordinator HOST:PORT --num-processes N --process-id I]

Axis names: template variables (``architecture``), ``variables.NAME``, or
``COMPONENT.ATTRIBUTE`` (``shared_glb.depth``, ``PE_column.meshX``); see
:mod:`jaxloop.sweep.points`.  Files written: :mod:`jaxloop.sweep.outputs`.
"""
from __future__ import annotations

import sys
import time

from jaxloop.errors import SpecError


def register(subparsers, add_var_argument) -> None:
  p = subparsers.add_parser(
      "sweep", help="map layers on a grid or sample of architectures "
      "(table, Pareto front, plots)")
  p.add_argument("files", nargs="+", help="architecture inputs (YAML, ERT/"
                 "ART, constraints; or a template such as top.yaml.jinja2)")
  p.add_argument("--layers", nargs="+", default=None, metavar="PATH",
                 help="problem files, folders or globs (identical layers "
                 "mapped once); default: the problem in the files")
  p.add_argument("-o", "--output", default="jaxloop-sweep")
  p.add_argument("--grid", action="append", default=[], metavar="NAME=V,..",
                 help="an axis with these values (repeatable)")
  p.add_argument("--range", action="append", default=[],
                 metavar="NAME=LO:HI[:log]", help="a continuous axis "
                 "(for --random / --lhs; integers when LO, HI are)")
  p.add_argument("--random", type=int, default=None, metavar="N",
                 help="N points drawn uniformly (default: the grid)")
  p.add_argument("--lhs", type=int, default=None, metavar="N",
                 help="N points of a Latin hypercube")
  p.add_argument("--budget", type=int, default=4096, metavar="N",
                 help="model evaluations per point and layer (default "
                 "4096: half a shared uniform sample, half evolution)")
  p.add_argument("--objective", default="edp",
                 help="per-layer mapping objective: edp, energy, delay")
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--points-per-call", type=int, default=8, metavar="N",
                 help="points evaluated together per call (padded)")
  p.add_argument("--coordinator", default=None, metavar="HOST:PORT",
                 help="jax.distributed coordinator: split the points "
                 "over processes")
  p.add_argument("--num-processes", type=int, default=1)
  p.add_argument("--process-id", type=int, default=0)
  p.add_argument("--quiet", action="store_true", help="no progress lines")
  add_var_argument(p)
  p.set_defaults(func=cmd_sweep)


def _axes(args):
  from jaxloop.sweep.points import parse_grid, parse_range
  axes = [parse_grid(g) for g in args.grid] + [parse_range(r)
                                               for r in args.range]
  names = [a.name for a in axes]
  twice = sorted({n for n in names if names.count(n) > 1})
  if twice:
    raise SpecError(f"axis '{twice[0]}' given twice", path="--grid",
                    hint="Give each axis once.")
  return axes


def _settings(args):
  from jaxloop.mapper.objective import parse_objective
  from jaxloop.sweep.search import SearchSettings
  if args.budget < 64:
    raise SpecError(f"--budget {args.budget}: at least 64 evaluations",
                    path="--budget", hint="e.g. --budget 4096")
  if args.points_per_call < 1:
    raise SpecError("--points-per-call must be at least 1",
                    path="--points-per-call")
  return SearchSettings(budget=args.budget, objective=parse_objective(
      args.objective), seed=args.seed, points_per_call=args.points_per_call)


def _distributed(args) -> tuple[int, int]:
  """``(process index, count)``; joins ``jax.distributed`` when asked."""
  if args.coordinator is None:
    return 0, 1
  import jax
  jax.distributed.initialize(coordinator_address=args.coordinator,
                             num_processes=args.num_processes,
                             process_id=args.process_id)
  return jax.process_index(), jax.process_count()


def cmd_sweep(args) -> int:
  from jaxloop.spec.templates import parse_variables
  from jaxloop.sweep.layers import Layer, network_layers
  from jaxloop.sweep.outputs import write_outputs
  from jaxloop.sweep.points import make_points
  from jaxloop.sweep.run import run_sweep
  t0 = time.perf_counter() if args.started is None else args.started
  axes = _axes(args)
  fixed = parse_variables(args.var)
  points = [{**fixed, **p} for p in make_points(axes, args.random, args.lhs,
                                                args.seed)]
  settings = _settings(args)
  layers = (network_layers(args.layers) if args.layers else
            [Layer("problem", None)])
  pid, nproc = _distributed(args)
  say = None if args.quiet else (
      lambda m: print(f"[{pid}] {m}", file=sys.stderr, flush=True))
  result = run_sweep(args.files, points, layers, settings, part=(pid, nproc),
                     strict=args.strict, progress=say)
  if nproc > 1:
    from jaxloop.sweep.distributed import allgather_rows
    result = allgather_rows(result)
  result.info["wall_seconds"] = time.perf_counter() - t0
  if pid == 0:
    summary = write_outputs(result, args.output, [a.name for a in axes], {
        "budget": settings.budget, "objective": list(settings.objective),
        "seed": settings.seed, "points_per_call": settings.points_per_call,
        "layers": [l.name for l in layers],
        "repeats": [l.repeat for l in layers]})
    print(f"{len(points)} points x {len(layers)} layers "
          f"({summary['valid_points']} valid points, "
          f"{len(summary['pareto_ids'])} on the Pareto front) in "
          f"{result.info['wall_seconds']:.1f} s, "
          f"{result.info['compiles']} compiles: {args.output}/sweep.csv, "
          "sweep.parquet, layers.csv, pareto.csv, pareto.png, "
          "breakdown.png, summary.json")
  return 0
