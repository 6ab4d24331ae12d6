"""Research commands: ``jaxloop dataset`` (and more added to
:data:`COMMANDS`).

    jaxloop dataset FILES... --count N -o OUT [--var NAME=VALUE]
        [--seed S] [--sampler uniform|biased] [--chunk C]
        [--compression none|lz4|snappy|zstd] [--arch NAME] [--layer NAME]

Writes ``OUT/<arch>__<layer>.parquet`` and lists it in
``OUT/manifest.json`` (:mod:`jaxloop.research.dataset`); prints the rows,
the valid fraction and the rate.
"""
from __future__ import annotations

import time

from jaxloop.errors import SpecError


def add_dataset_parser(subparsers, add_var_argument) -> None:
  p = subparsers.add_parser(
      "dataset", help="sample mappings and write their exact statistics "
      "to Parquet (for ML research)")
  p.add_argument("files", nargs="+", help="YAML inputs, merged by top key "
                 "(or a template such as top.yaml.jinja2)")
  p.add_argument("--count", type=int, required=True, metavar="N",
                 help="rows to write")
  p.add_argument("-o", "--output", required=True, metavar="OUT",
                 help="dataset directory (created; manifest.json updated)")
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--sampler", default="uniform",
                 help="uniform, or biased (each row the best EDP of 8 "
                 "uniform draws)")
  p.add_argument("--chunk", type=int, default=65536, metavar="C",
                 help="rows per compiled call and Parquet row group")
  p.add_argument("--compression", default="none",
                 help="Parquet codec: none, lz4, snappy, zstd")
  p.add_argument("--arch", default=None, help="the architecture's name in "
                 "the dataset (default: --var architecture or the first "
                 "file's name)")
  p.add_argument("--layer", default=None, help="the layer's name (default: "
                 "--var problem or the problem's bounds)")
  p.add_argument("--quiet", action="store_true", help="no progress lines")
  add_var_argument(p)
  p.set_defaults(func=cmd_dataset)


def cmd_dataset(args) -> int:
  from jaxloop import api
  from jaxloop.cli import _variables
  from jaxloop.research.dataset import write_dataset
  if args.count < 1:
    raise SpecError(f"--count must be at least 1, got {args.count}",
                    path="--count", hint="Pass the number of rows to write.")
  if args.compression not in ("none", "lz4", "snappy", "zstd", "gzip",
                              "brotli"):
    raise SpecError(f"unknown compression '{args.compression}'",
                    path="--compression",
                    hint="Use none, lz4, snappy, zstd, gzip or brotli.")
  variables = _variables(args)
  t0 = time.perf_counter()
  wl = api.load(*args.files, variables=variables)
  loaded = time.perf_counter() - t0

  def progress(chunks: int, rows: int) -> None:
    if not args.quiet and chunks % 16 == 0:
      print(f"  {rows} rows, {time.perf_counter() - t0:.1f} s", flush=True)

  info = write_dataset(wl, args.output, count=args.count, seed=args.seed,
                       sampler=args.sampler, chunk=args.chunk,
                       arch=args.arch, layer=args.layer, variables=variables,
                       compression=args.compression, on_chunk=progress)
  rate = (f"{info.rate:.3g} rows/s after the first chunk" if info.rate
          else f"{info.rows / info.elapsed:.3g} rows/s")
  print(f"wrote {info.path}: {info.rows} rows ({info.valid} valid, "
        f"{info.valid / info.rows:.1%}) in {info.elapsed:.1f} s; {rate} "
        f"(compile and first chunk {info.compile_seconds:.1f} s, load "
        f"{loaded:.1f} s)")
  return 0


# Subcommands of this module: each ``fn(subparsers, add_var_argument)``.
COMMANDS = [add_dataset_parser]


def register(subparsers, add_var_argument) -> None:
  """Adds every parser of :data:`COMMANDS` (``jaxloop.cli`` calls this)."""
  for add in COMMANDS:
    add(subparsers, add_var_argument)
