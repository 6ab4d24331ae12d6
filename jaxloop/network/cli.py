"""``jaxloop network ARCH_FILES... --layers PATH... -o OUT``: map every
distinct layer of a network; write network.csv, summary.json, layers/ and
the energy breakdown plot (:mod:`jaxloop.network.outputs`)."""
from __future__ import annotations

import argparse
import time

from jaxloop.errors import SpecError


def register(subparsers, add_var_argument) -> None:
  """Adds the ``network`` subcommand."""
  p = subparsers.add_parser(
      "network", help="map every layer of a network (problem files, a "
      "folder, a glob, a network YAML or an ONNX model) on one architecture",
      description=__doc__)
  p.add_argument("arch_files", nargs="+", metavar="ARCH_FILES",
                 help="architecture (+ constraints, mapper, ERT/ART) files, "
                 "or a template such as example_designs/top.yaml.jinja2 "
                 "(each layer is passed as its 'problem' variable)")
  p.add_argument("--layers", nargs="+", required=True, metavar="PATH",
                 help="problem files, folders, globs, network YAML files "
                 "(network: {layers: [{file, repeat, name}]}) or .onnx "
                 "models")
  p.add_argument("-o", "--output", required=True, help="output folder")
  limit = p.add_mutually_exclusive_group()
  limit.add_argument("--time-limit-per-layer", type=float, default=None,
                     metavar="S", help="search seconds per distinct layer, "
                     "compile excluded (default 2 without a budget)")
  limit.add_argument("--budget-per-layer", type=int, default=None,
                     metavar="N", help="mappings evaluated per distinct "
                     "layer (reproducible)")
  p.add_argument("--search", default="evolve",
                 help="search method of each layer (default evolve)")
  p.add_argument("--objective", default="edp")
  p.add_argument("--seed", type=int, default=0)
  add_var_argument(p)
  p.set_defaults(func=cmd_network)


def cmd_network(args: argparse.Namespace) -> int:
  """Runs the command; prints one line per distinct layer and the totals.
  """
  from jaxloop.mapper import METHODS
  from jaxloop.network.layers import load_layers
  from jaxloop.network.mapper import map_network
  from jaxloop.network.outputs import write_network
  from jaxloop.spec.templates import parse_variables
  if args.search not in METHODS:
    raise SpecError(f"unknown search method '{args.search}'",
                    path="--search", hint="One of " + ", ".join(METHODS))
  for name, value in (("--time-limit-per-layer", args.time_limit_per_layer),
                      ("--budget-per-layer", args.budget_per_layer)):
    if value is not None and value <= 0:
      raise SpecError(f"{name} must be positive, not {value}", path=name,
                      hint="e.g. --time-limit-per-layer 2")
  started = getattr(args, "started", None) or time.perf_counter()
  variables = parse_variables(args.var)
  layers = load_layers(args.layers)
  res = map_network(args.arch_files, layers, variables=variables,
                    time_limit_per_layer=args.time_limit_per_layer,
                    budget_per_layer=args.budget_per_layer,
                    method=args.search, objective=args.objective,
                    seed=args.seed, strict=args.strict)
  settings = {"arch_files": [str(f) for f in args.arch_files],
              "layers": list(args.layers), "variables": variables,
              "time_limit_per_layer": args.time_limit_per_layer,
              "budget_per_layer": args.budget_per_layer,
              "search": args.search, "objective": args.objective,
              "seed": args.seed}
  summary = write_network(res, args.output, settings)
  for r in res.layers:
    st = r.stats
    text = ("no legal mapping found" if st is None else
            f"EDP {float(st.edp):.4e}  energy "
            f"{float(st.energy_total) * 1e-6:.2f} uJ  cycles "
            f"{int(st.cycles)}")
    print(f"{r.name:>12} x{r.repeat:<3} {res.kinds[r.kind]:<22} {text}")
  t = summary["totals"]
  wall = time.perf_counter() - started
  print(f"network    : {t['layers']} layers ({t['distinct_layers']} "
        f"distinct, {len(res.kinds)} kinds), energy "
        f"{t['energy_pj'] * 1e-6:.2f} uJ, cycles {t['cycles']:.0f}, EDP "
        f"{t['edp']:.4e} J*cycle")
  print(f"compiles   : {res.compiles} model programs "
        f"({res.compile_seconds:.1f} s), {res.draw_compiles} draws "
        f"({res.draw_compile_seconds:.1f} s)")
  print(f"time       : {wall:.1f} s (load {res.seconds['load']:.1f}, "
        f"compile {res.seconds['compile']:.1f}, search "
        f"{res.seconds['search']:.1f})")
  print(f"wrote {args.output}/: network.csv, summary.json, "
        "energy_breakdown.png, layers/<name>/")
  return 0
