"""Command line: ``jaxloop model | map | validate | demo | ert``.

Bad input ends in one paragraph naming the file, key and fix, exit code 2;
never a traceback (set ``JAXLOOP_DEBUG=1`` to see one).
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys
import traceback
import warnings
from pathlib import Path

import yaml

from jaxloop.errors import (InvalidMappingError, SpecError, SpecWarning,
                            UnsupportedFeatureError, warn)


def _summary_line(d: dict) -> str:
  sm = d["summary"]
  return (f"cycles {sm['cycles']:.0f}  energy {sm['energy_uj']:.2f} uJ  "
          f"utilization {sm['utilization_pct']:.2f}%  EDP {sm['edp']:.3e} "
          f"J*cycle  fJ/compute {sm['fj_per_compute']['Total']:.2f}"
          + ("" if sm["valid"] else "  (INVALID mapping)"))


def cmd_model(args) -> int:
  from jaxloop import api
  wl = api.load(*args.files, variables=_variables(args))
  # Like timeloop-model, refuse spatial factors beyond the fan-out.
  mapping = wl.mapping(check_fanout=not args.allow_invalid)
  stats = wl.evaluate(mapping)
  _check_valid(wl, mapping, stats, args.allow_invalid)
  d = wl.write(stats, args.output,
               "jaxloop model: " + ", ".join(map(str, args.files)),
               mapping=mapping)
  print(_summary_line(d))
  print(f"wrote {args.output}/: {', '.join(_OUTPUTS)}")
  return 0


def _check_valid(wl, mapping, stats, allow_invalid: bool) -> None:
  """Like timeloop-model, refuse a mapping that does not fit (exit 2,
  naming each level, data space, tile and capacity); with
  ``--allow-invalid`` that message is a warning and the stats are written."""
  from jaxloop import validity
  where = next((d.where for d in wl.spec.mapping if d.where), wl.sources)
  try:
    validity.check(wl.structure, wl.params, mapping, stats, where=where)
  except InvalidMappingError as e:
    if not allow_invalid:
      raise
    warn("; ".join(e.violations) + " (written anyway: --allow-invalid)",
         path="mapping", where=where)


def cmd_map(args) -> int:
  """``jaxloop map``: ``--time-limit`` bounds the command from its start
  (``args.started``, a ``time.perf_counter()`` reading: on a real command
  line the process's start, so interpreter start-up, imports and the
  huge-page re-exec count too; from Python, now)."""
  import time
  from jaxloop.mapper.cli import run_map

  started = getattr(args, "started", None) or time.perf_counter()
  wl, result = run_map(args.files, args.output, method=args.search,
                       time_limit=args.time_limit, budget=args.budget,
                       seed=args.seed, objective=args.objective,
                       victory=args.victory, timeout=args.timeout,
                       search_size=args.search_size,
                       variables=_variables(args), started=started,
                       policy=getattr(args, "policy", None))
  wl.write(result.best_stats, args.output,
           "jaxloop map: " + ", ".join(map(str, args.files)),
           mapping=result.best_mapping)
  for line in result.summary_lines():
    print(line)
  print(f"wrote {args.output}/: {', '.join(_OUTPUTS + ('progress.csv',))}")
  return 0


# What Workload.write puts in an output folder.
_OUTPUTS = ("stats.json", "stats.txt", "map.yaml", "map.txt",
            "parsed-processed-input.yaml", "ERT.yaml", "ART.yaml")


def cmd_validate(args) -> int:
  from jaxloop.validate import validate
  root = Path(args.directory)
  if not (root / "cases.json").is_file():
    raise SpecError("no cases.json in this directory", path="cases.json",
                    where=str(root),
                    hint="Point at ../shared/timeloop-reference.")
  ok, total = validate(root)
  return 0 if ok == total else 1


def cmd_demo(args) -> int:
  """Evaluates the bundled example mapping, then maps it for a few seconds."""
  from jaxloop import api
  files = api.example_files()
  out = Path(args.output)
  print("jaxloop demo: bundled example", Path(files[0]).parent)
  wl = api.load(*files)
  d = wl.write(wl.evaluate(), out / "model", "jaxloop demo (bundled mapping)")
  print("  given mapping :", _summary_line(d))
  ns = argparse.Namespace(
      files=[f for f in files if not f.endswith("map.yaml")],
      output=str(out / "map"), time_limit=args.time_limit, budget=None,
      seed=0, objective="edp", search="auto", victory=None, timeout=None,
      search_size=None)
  return cmd_map(ns)


def cmd_ert(args) -> int:
  """Writes built-in energy/area tables (no Accelergy) in Accelergy's format,
  from the architecture and component files (no problem needed)."""
  from jaxloop.estimate import estimate_tables, write_tables
  from jaxloop.spec import load_architecture
  from jaxloop.spec.loader import explain_v03
  spec = load_architecture(*args.files, variables=_variables(args))
  try:
    ert, art = estimate_tables(spec)
  except SpecError as e:
    raise explain_v03(e, spec.sources) from None
  e_path, a_path = write_tables(ert, art, args.output)
  for name, actions in ert.entries:
    print(f"  {name}: " + "  ".join(f"{a.action} {a.energy:.4g} pJ"
                                    for a in actions))
  print(f"wrote {e_path} and {a_path}")
  return 0


def _variables(args) -> dict:
  """The ``--var NAME=VALUE`` template variables of a command."""
  from jaxloop.spec.templates import parse_variables
  return parse_variables(getattr(args, "var", None))


def _add_var_argument(parser: argparse.ArgumentParser) -> None:
  parser.add_argument(
      "--var", action="append", default=[], metavar="NAME=VALUE",
      help="a variable of the Jinja templates among the inputs (*.jinja2, "
      "or files holding {{ or {%%}), repeatable; e.g. --var "
      "architecture=eyeriss_like (Timeloop's --jinja_parse_data)")


# Modules that add a subcommand of their own: each defines
# ``register(subparsers, add_var_argument)``, which adds its parser and sets
# ``func`` (called with the parsed arguments; returns the exit code).
COMMAND_MODULES: tuple[str, ...] = ("jaxloop.sweep.cli",
                                    "jaxloop.research.cli",
                                    "jaxloop.network.cli")


def build_parser() -> argparse.ArgumentParser:
  p = argparse.ArgumentParser(
      prog="jaxloop",
      description="Timeloop's accelerator model and mappers, batched in JAX.")
  p.add_argument("--strict", action="store_true", help="make warnings "
                 "(defaults or guesses taken for the input) errors, exit 2")
  sub = p.add_subparsers(dest="command", required=True)
  m = sub.add_parser("model", help="evaluate the mapping in the input files "
                     "(same inputs as timeloop-model)")
  m.add_argument("files", nargs="+", help="YAML inputs, merged by top key")
  m.add_argument("-o", "--output", default="jaxloop-out")
  m.add_argument("--allow-invalid", action="store_true", help="write the "
                 "stats of a mapping Timeloop refuses (a warning, not exit 2)")
  _add_var_argument(m)
  m.set_defaults(func=cmd_model)
  v = sub.add_parser("validate", help="compare with Timeloop reference cases")
  v.add_argument("directory", help="folder with cases.json")
  v.set_defaults(func=cmd_validate)
  mp = sub.add_parser("map", help="search for the best mapping "
                      "(same inputs as timeloop-mapper)")
  from jaxloop.mapper.cli import add_map_arguments
  add_map_arguments(mp)
  _add_var_argument(mp)
  mp.set_defaults(func=cmd_map)
  e = sub.add_parser("ert", help="estimate energy/area tables without "
                     "Accelergy (writes ERT.yaml, ART.yaml)")
  e.add_argument("files", nargs="+", help="architecture and component "
                 "YAML inputs (a problem is not needed); compound_components "
                 "in them are followed")
  e.add_argument("-o", "--output", default="jaxloop-ert")
  _add_var_argument(e)
  e.set_defaults(func=cmd_ert)
  dm = sub.add_parser("demo", help="evaluate and map the bundled example")
  dm.add_argument("-o", "--output", default="jaxloop-demo")
  dm.add_argument("--time-limit", type=float, default=10.0)
  dm.set_defaults(func=cmd_demo)
  for name in COMMAND_MODULES:
    importlib.import_module(name).register(sub, _add_var_argument)
  return p


def main(argv=None) -> int:
  """Runs a command; ``argv=None`` means a real command line, which also
  applies :func:`jaxloop.runtime.configure` (calls from Python with an
  ``argv`` list leave the process as it is)."""
  started = None
  if argv is None:
    from jaxloop import runtime
    runtime.configure()
    started = runtime.process_started()
  args = build_parser().parse_args(argv)
  args.started = started
  with warnings.catch_warnings():
    _route_warnings(args.strict)
    return _run(args)


def _route_warnings(strict: bool) -> None:
  """Input warnings print as one ``jaxloop: warning:`` line each (every
  other warning too, whatever its origin, in place of Python's two-line
  dump); ``strict`` makes jaxloop's input warnings errors."""
  action = "error" if strict else "always"
  warnings.filterwarnings(action, category=SpecWarning)
  warnings.filterwarnings(action, category=UserWarning, module=r"jaxloop\b")
  shown = set()

  def show(message, category, filename, lineno, file=None, line=None):
    del filename, lineno, file, line
    text = (SpecWarning.of(message).format()
            if issubclass(category, UserWarning) else
            f"{category.__name__}: {message}")
    text = " ".join(text.split())
    if text not in shown:
      shown.add(text)
      print(f"jaxloop: warning: {text}", file=sys.stderr)

  warnings.showwarning = show


def _run(args) -> int:
  """Runs the command; errors become one message and exit code 2."""
  try:
    return args.func(args)
  except UserWarning as w:   # an input warning under --strict
    if not args.strict:
      raise
    print(f"jaxloop: error: {SpecWarning.of(w).as_error()}", file=sys.stderr)
    return 2
  except (SpecError, UnsupportedFeatureError) as e:
    print(f"jaxloop: error: {e}", file=sys.stderr)
    return 2
  except (FileNotFoundError, IsADirectoryError, yaml.YAMLError) as e:
    print(f"jaxloop: error: {e}", file=sys.stderr)
    return 2
  except Exception as e:  # noqa: BLE001 - the CLI never shows a traceback
    if os.environ.get("JAXLOOP_DEBUG"):
      traceback.print_exc()
    print(f"jaxloop: internal error: {type(e).__name__}: {e}\n"
          "  Please report it with the input files; set JAXLOOP_DEBUG=1 for "
          "the traceback.", file=sys.stderr)
    return 1


if __name__ == "__main__":
  sys.exit(main())
