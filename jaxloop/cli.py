"""Command line: ``jaxloop model | map | validate | demo | ert``.

Bad input ends in one paragraph naming the file, key and fix, exit code 2;
never a traceback (set ``JAXLOOP_DEBUG=1`` to see one).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
from pathlib import Path

import yaml

from jaxloop.errors import SpecError, UnsupportedFeatureError

SPECS = Path(__file__).resolve().parents[1] / "specs"


def _write_outputs(out: Path, structure, stats, title: str) -> dict:
  from jaxloop.report import stats_dict, stats_text
  out.mkdir(parents=True, exist_ok=True)
  d = stats_dict(structure, stats)
  (out / "stats.json").write_text(json.dumps(d, indent=1))
  (out / "stats.txt").write_text(stats_text(structure, stats, title))
  return d


def _summary_line(d: dict) -> str:
  sm = d["summary"]
  return (f"cycles {sm['cycles']:.0f}  energy {sm['energy_uj']:.2f} uJ  "
          f"utilization {sm['utilization_pct']:.2f}%  EDP {sm['edp']:.3e} "
          f"J*cycle  fJ/compute {sm['fj_per_compute']['Total']:.2f}"
          + ("" if sm["valid"] else "  (INVALID mapping)"))


def cmd_model(args) -> int:
  from jaxloop import api
  from jaxloop.mapping import mapping_from_directives
  wl = api.load(*args.files)
  mapping = None
  if wl.spec.mapping:
    # Like timeloop-model, refuse spatial factors beyond the fan-out.
    mapping = mapping_from_directives(
        wl.structure, wl.spec.mapping, ", ".join(wl.spec.sources),
        check_fanout=True)
  stats = wl.evaluate(mapping)
  d = _write_outputs(Path(args.output), wl.structure, stats,
                     "jaxloop model: " + ", ".join(map(str, args.files)))
  print(_summary_line(d))
  print(f"wrote {args.output}/stats.json and {args.output}/stats.txt")
  return 0


def cmd_map(args) -> int:
  try:
    from jaxloop.search.cli import run_map
  except ImportError as e:  # pragma: no cover - mapper not installed
    raise UnsupportedFeatureError(f"the mapper is not available ({e})")
  structure, params, mapping, stats = run_map(args)
  del params, mapping
  d = _write_outputs(Path(args.output), structure, stats,
                     "jaxloop map: " + ", ".join(map(str, args.files)))
  print(_summary_line(d))
  print(f"wrote {args.output}/map.yaml, stats.json, stats.txt, progress.csv")
  return 0


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
  files = sorted(str(p) for p in (SPECS / "example").glob("*.yaml"))
  out = Path(args.output)
  print("jaxloop demo: bundled example", SPECS / "example")
  wl = api.load(*files)
  d = _write_outputs(out / "model", wl.structure, wl.evaluate(),
                     "jaxloop demo (bundled mapping)")
  print("  given mapping :", _summary_line(d))
  try:
    import jaxloop.search.cli  # noqa: F401
  except ImportError:
    return 0
  map_files = [f for f in files if not f.endswith("map.yaml")]
  ns = argparse.Namespace(files=map_files, output=str(out / "map"),
                          time_limit=args.time_limit, budget=None, seed=0,
                          objective="edp", search="auto")
  return cmd_map(ns)


def cmd_ert(args) -> int:
  """Writes built-in energy/area tables (no Accelergy) in Accelergy's format."""
  from jaxloop.estimate import estimate_tables, write_tables
  from jaxloop.spec import load_spec
  spec = load_spec(*args.files)
  ert, art = estimate_tables(spec)
  e_path, a_path = write_tables(ert, art, args.output)
  for name, actions in ert.entries:
    print(f"  {name}: " + "  ".join(f"{a.action} {a.energy:.4g} pJ"
                                    for a in actions))
  print(f"wrote {e_path} and {a_path}")
  return 0


def build_parser() -> argparse.ArgumentParser:
  p = argparse.ArgumentParser(
      prog="jaxloop",
      description="Timeloop's accelerator model and mappers, batched in JAX.")
  sub = p.add_subparsers(dest="command", required=True)
  m = sub.add_parser("model", help="evaluate the mapping in the input files "
                     "(same inputs as timeloop-model)")
  m.add_argument("files", nargs="+", help="YAML inputs, merged by top key")
  m.add_argument("-o", "--output", default="jaxloop-out")
  m.set_defaults(func=cmd_model)
  v = sub.add_parser("validate", help="compare with Timeloop reference cases")
  v.add_argument("directory", help="folder with cases.json")
  v.set_defaults(func=cmd_validate)
  mp = sub.add_parser("map", help="search for the best mapping "
                      "(same inputs as timeloop-mapper)")
  try:
    from jaxloop.search.cli import add_map_arguments
    add_map_arguments(mp)
  except ImportError:
    mp.add_argument("files", nargs="+")
    mp.add_argument("-o", "--output", default="jaxloop-out")
  mp.set_defaults(func=cmd_map)
  e = sub.add_parser("ert", help="estimate energy/area tables without "
                     "Accelergy (writes ERT.yaml, ART.yaml)")
  e.add_argument("files", nargs="+", help="architecture (and other) YAML "
                 "inputs; compound_components in them are followed")
  e.add_argument("-o", "--output", default="jaxloop-ert")
  e.set_defaults(func=cmd_ert)
  dm = sub.add_parser("demo", help="evaluate and map the bundled example")
  dm.add_argument("-o", "--output", default="jaxloop-demo")
  dm.add_argument("--time-limit", type=float, default=10.0)
  dm.set_defaults(func=cmd_demo)
  return p


def main(argv=None) -> int:
  if argv is None:   # a real command line (not a call from Python)
    from jaxloop import shard
    shard.use_huge_pages()
  args = build_parser().parse_args(argv)
  try:
    # One JAX CPU device per core: the mapper and streams shard over them
    # (a no-op on GPU runs, when set by the user, or once JAX is running).
    from jaxloop import shard
    shard.use_cpu_cores()
    return args.func(args)
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
