"""Datasets of sampled mappings and their exact statistics, in Parquet.

>>> info = write_dataset(workload, "data/", count=10**6, seed=0)
>>> table, meta = read_dataset("data/" + info.file)

One Parquet file per (architecture, layer) pair, written in bounded memory:
each chunk of mappings is drawn on the device
(:func:`jaxloop.streaming.draw_chunk`, the stream's sampler), evaluated by
the exact model, and written as one row group by a writer thread while
the next chunk is computed.  A directory's ``manifest.json`` lists its
files with their pair names and features, for layer-wise and
architecture-wise splits (:func:`holdout_split`).

Samplers (``sampler=``):

* ``uniform``: row ``r`` is the ``r``-th uniform sample of the mapspace
  (:meth:`jaxloop.Mapspace.draw_blocks`), chunk ``c`` drawn from
  ``fold_in(PRNGKey(seed), c)``.
* ``biased``: each row is the best of :data:`BIASED_DRAWS` uniform draws
  (a tournament): the valid draw of lowest EDP, the first on ties, and an
  invalid draw only when all are invalid.  Costs ``BIASED_DRAWS`` cheap
  totals-only evaluations per row.

Rows (schema :data:`SCHEMA_VERSION`; column names and types in
:mod:`jaxloop.research.columns`): ``row`` (position in the sampled
stream), ``arch`` and ``layer`` (the pair's names: split columns), the
mapping's stored slots (factors, loop positions, keep bits: the ones its
mapspace lets vary), ``valid``, ``energy_pj``, ``cycles``, ``edp``
(J*cycles) and per level ``level_energy_pj``, ``level_reads``,
``level_fills``, ``level_updates``.  :func:`table_mapping` rebuilds the
full :class:`jaxloop.Mapping` of each row, and
:func:`jaxloop.research.features.encode_mapping` its fixed-width features.

The file's key-value metadata ``jaxloop.dataset`` (JSON) holds the
:class:`~jaxloop.research.columns.Layout` (the slots not stored), the
names of levels, dims and data spaces, the bounds, the sampler and seed,
the input files and variables, and the layer and architecture features
(:mod:`jaxloop.research.features`; their names are in ``manifest.json``).
"""
from __future__ import annotations

import dataclasses
import functools
import json
import os
import queue
import threading
import time
from pathlib import Path
from typing import Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from jaxloop import shard
from jaxloop.errors import SpecError
from jaxloop.model import blocks
from jaxloop.precision import exact
from jaxloop.research import columns, features
from jaxloop.streaming import _chunk_layout, draw_chunk
from jaxloop.types import Mapping, Stats, edp

__all__ = ["write_dataset", "read_dataset", "table_mapping", "level_stats",
           "holdout_split", "read_manifest", "pair_names", "DatasetInfo",
           "SCHEMA_VERSION", "SAMPLERS", "BIASED_DRAWS"]

SCHEMA_VERSION = 1
SAMPLERS = ("uniform", "biased")
BIASED_DRAWS = 8
METADATA_KEY = b"jaxloop.dataset"
MANIFEST = "manifest.json"
# Row groups written while the next chunk is computed (bounds memory).
_QUEUE = 2


@dataclasses.dataclass
class DatasetInfo:
  """What :func:`write_dataset` wrote.

  Attributes:
    path: the Parquet file; ``file``: its name in the directory.
    rows, valid: rows written and how many are valid mappings.
    chunks: row groups; ``elapsed``: seconds (compilation included);
    ``compile_seconds``: the first chunk's compilation and run;
    ``first_chunk_rows``: its rows.
  """
  path: str
  file: str
  rows: int
  valid: int
  chunks: int
  elapsed: float
  compile_seconds: float
  first_chunk_rows: int

  @property
  def rate(self) -> float:
    """Rows per second after the first chunk (0 with one chunk)."""
    steady = self.elapsed - self.compile_seconds
    rows = self.rows - self.first_chunk_rows
    return rows / steady if steady > 0 and rows else 0.0


# ------------------------------------------------------------------ device
def _row_stats(stats: Stats) -> dict:
  """What a row keeps of a batch-last block's statistics: totals ``[C]``
  and per-level ``[L, C]`` (counts summed over data spaces)."""
  return {"valid": stats.valid, "energy_pj": stats.energy_total,
          "cycles": stats.cycles, "level_energy_pj": stats.level_energy,
          "level_reads": jnp.sum(stats.reads, axis=-2),
          "level_fills": jnp.sum(stats.fills, axis=-2),
          "level_updates": jnp.sum(stats.updates, axis=-2)}


def _totals(stats: Stats) -> Stats:
  return stats.only(("valid", "energy_total", "cycles"))


def _tournament(score: jax.Array, draws: int) -> jax.Array:
  """``i64[C]`` flat index of each row's winner among ``draws`` candidate
  groups: ``score [draws * C]`` (row r's candidates at ``r + j * C``),
  lowest score, the first on ties."""
  C = score.shape[0] // draws
  win = jnp.argmin(score.reshape(draws, C), axis=0)
  return win.astype(jnp.int64) * C + jnp.arange(C, dtype=jnp.int64)


@functools.lru_cache(maxsize=16)
def _chunk_program(structure, mapspace, chunk: int, lanes: int, draws: int,
                   devices: tuple):
  """Jitted ``(params, key, chunk_id) -> (columns, stats)`` of one chunk
  (:func:`columns.device_columns`, :func:`columns.device_stats`): uniform
  draws, or each row the tournament winner of ``draws``."""
  mesh = shard.batch_mesh(devices) if len(devices) > 1 else None
  layout = columns.layout_of(mapspace)

  def evaluate(params, mapping, pick):
    fn = functools.partial(blocks.evaluate_blocks, structure, pick=pick)
    return (shard.per_device(fn, mesh) if mesh else fn)(params, mapping)

  def program(params, key, chunk_id):
    mapping = draw_chunk(mapspace, key, chunk_id, chunk * draws, lanes, mesh)
    if draws > 1:
      tot = jax.tree.map(blocks.flat, evaluate(params, mapping, _totals))
      score = jnp.where(tot.valid, edp(tot.energy_total, tot.cycles), jnp.inf)
      rows = blocks.take(mapping, _tournament(score, draws))
      mapping = blocks.to_blocks(rows, lanes)
      if mesh is not None:
        mapping = jax.lax.with_sharding_constraint(
            mapping, shard.batch_sharding(mesh))
    return (columns.device_columns(layout, mapping),
            columns.device_stats(evaluate(params, mapping, _row_stats)))

  return jax.jit(program)


# -------------------------------------------------------------------- host
class _Writer:
  """A Parquet file written by a thread, one row group per record batch;
  at most :data:`_QUEUE` batches wait (bounded memory)."""

  def __init__(self, path: Path, sch: pa.Schema, compression: str):
    self._file = pq.ParquetWriter(str(path), sch, compression=compression,
                                  use_dictionary=["arch", "layer"],
                                  write_statistics=["row", "valid"])
    self._queue: queue.Queue = queue.Queue(_QUEUE)
    self._error: Optional[BaseException] = None
    self._thread = threading.Thread(target=self._loop, daemon=True)
    self._thread.start()

  def _loop(self) -> None:
    while (batch := self._queue.get()) is not None:
      if self._error is None:
        try:
          self._file.write_batch(batch, row_group_size=batch.num_rows)
        except BaseException as e:          # re-raised by put/close
          self._error = e

  def put(self, batch: pa.RecordBatch) -> None:
    if self._error is not None:
      raise self._error
    self._queue.put(batch)

  def close(self) -> None:
    self._queue.put(None)
    self._thread.join()
    self._file.close()
    if self._error is not None:
      raise self._error


# --------------------------------------------------------------------- API
@exact
def write_dataset(workload, out: str | os.PathLike, *, count: int,
                  seed: int = 0, sampler: str = "uniform",
                  chunk: int = 65536, arch: Optional[str] = None,
                  layer: Optional[str] = None,
                  variables: Optional[dict] = None,
                  devices: Optional[Sequence[jax.Device]] = None,
                  compression: str = "none", on_chunk=None) -> DatasetInfo:
  """Writes ``count`` sampled mappings of ``workload`` and their exact
  statistics to ``out/<arch>__<layer>[__biased].parquet`` and lists it in
  ``out/manifest.json``.

  Args:
    workload: a :class:`jaxloop.Workload`.
    out: the dataset directory (created).
    count: rows to write.
    seed: PRNG seed of the draws.
    sampler: ``uniform`` or ``biased`` (module docstring).
    chunk: rows per compiled call and per row group; memory is O(chunk).
    arch, layer: the pair's names (default :func:`pair_names`).
    variables: the template variables the workload was loaded with
      (recorded, and used for the default names).
    devices: devices whose 1-D mesh splits each chunk (default all local).
    compression: Parquet codec (``none``, ``snappy``, ``zstd``...).
    on_chunk: ``on_chunk(chunks_done, rows_done)`` after each row group.

  Raises:
    SpecError: a bad count, chunk or sampler, or a structure beyond the
      feature maxima.
  """
  count, chunk = _check_args(count, chunk, sampler)
  default_arch, default_layer = pair_names(workload, variables)
  arch, layer = arch or default_arch, layer or default_layer
  meta = _metadata(workload, arch, layer, sampler, seed, count, variables)
  devs = tuple(jax.local_devices() if devices is None else devices)
  chunk, lanes = _chunk_layout(chunk, len(devs))
  program = _chunk_program(workload.structure, workload.mapspace, chunk,
                           lanes, BIASED_DRAWS if sampler == "biased" else 1,
                           devs)
  out = Path(out)
  out.mkdir(parents=True, exist_ok=True)
  path = out / _file_name(arch, layer, sampler)
  tmp = path.with_suffix(".parquet.partial")
  layout = columns.layout_of(workload.mapspace)
  meta["layout"] = layout.to_json()
  sch = columns.schema(layout, {METADATA_KEY: json.dumps(meta).encode()})
  writer = _Writer(tmp, sch, compression)
  try:
    info = _write_chunks(program, workload.params, seed, count, chunk,
                         writer, functools.partial(
                             columns.record_batch, sch, layout, arch=arch,
                             layer=layer), on_chunk)
  except BaseException:
    writer.close()
    tmp.unlink(missing_ok=True)
    raise
  writer.close()
  os.replace(tmp, path)
  info.path, info.file = str(path), path.name
  _add_to_manifest(out, meta, info)
  return info


def _write_chunks(program, params, seed: int, count: int, chunk: int,
                  writer: _Writer, to_batch, on_chunk) -> DatasetInfo:
  """Dispatches chunk ``c + 1`` before converting and queueing chunk
  ``c`` (``to_batch(columns, stats, first_row, rows)`` makes its record
  batch); returns the counts and times (path fields left empty)."""
  params = jax.tree.map(jnp.asarray, params)
  key = jax.random.PRNGKey(seed)
  chunks = -(-count // chunk)
  t0 = time.perf_counter()
  first = valid = 0
  pending = None
  for c in range(chunks + 1):
    nxt = program(params, key, np.int64(c)) if c < chunks else None
    if pending is not None:
      done, result = pending
      rows = min(chunk, count - done * chunk)
      cols, stats = jax.tree.map(np.asarray, result)
      batch = to_batch(cols, stats, done * chunk, rows)
      writer.put(batch)
      valid += batch.column("valid").true_count
      if done == 0:
        compile_seconds, first = time.perf_counter() - t0, rows
      if on_chunk is not None:
        on_chunk(done + 1, done * chunk + rows)
    pending = (c, nxt)
  return DatasetInfo(path="", file="", rows=count, valid=valid,
                     chunks=chunks, elapsed=time.perf_counter() - t0,
                     compile_seconds=compile_seconds, first_chunk_rows=first)


def _check_args(count, chunk, sampler) -> tuple[int, int]:
  if sampler not in SAMPLERS:
    raise SpecError(f"unknown sampler '{sampler}'", path="sampler",
                    hint="Use " + " or ".join(SAMPLERS) + ".")
  for name, value in (("count", count), ("chunk", chunk)):
    if int(value) < 1:
      raise SpecError(f"{name} must be at least 1, got {value}", path=name,
                      hint=f"Pass a positive {name}.")
  return int(count), int(chunk)


def pair_names(workload, variables: Optional[dict] = None
               ) -> tuple[str, str]:
  """Default ``(arch, layer)`` names: the template variables
  ``architecture`` and ``problem`` (``../layer_shapes/`` and ``.yaml``
  dropped) when given, else the first input file's stem and the problem's
  dims with their bounds (``C64_M64_R3_...``)."""
  variables = variables or {}
  s = workload.structure
  arch = variables.get("architecture") or Path(
      workload.spec.sources[0]).stem
  layer = variables.get("problem")
  if layer:
    layer = str(layer).replace("../layer_shapes/", "").removesuffix(".yaml")
  else:
    layer = "_".join(f"{n}{b}" for n, b in zip(s.dim_names, s.dim_bounds))
  return str(arch), str(layer)


def _file_name(arch: str, layer: str, sampler: str) -> str:
  """``<arch>__<layer>.parquet`` (``__biased`` before the suffix for the
  biased sampler), other characters than letters, digits, ``-`` and
  ``.`` replaced by ``_``."""
  clean = lambda t: "".join(ch if ch.isalnum() or ch in "-." else "_"
                            for ch in t)
  tail = "" if sampler == "uniform" else f"__{sampler}"
  return f"{clean(arch)}__{clean(layer)}{tail}.parquet"


def _metadata(workload, arch: str, layer: str, sampler: str, seed: int,
              count: int, variables: Optional[dict]) -> dict:
  """The file's ``jaxloop.dataset`` metadata (module docstring)."""
  s = workload.structure
  layer_f, arch_f = features.workload_features(workload)
  return {"schema_version": SCHEMA_VERSION, "arch": arch, "layer": layer,
          "levels": s.num_levels, "dims": s.num_dims,
          "dataspaces": s.num_dataspaces,
          "level_names": list(s.level_names),
          "dim_names": list(s.dim_names),
          "dim_bounds": [int(b) for b in s.dim_bounds],
          "dataspace_names": list(s.dataspace_names),
          "sampler": sampler,
          "biased_draws": BIASED_DRAWS if sampler == "biased" else 1,
          "seed": int(seed), "count": int(count),
          "sources": list(workload.spec.sources),
          "variables": {str(k): str(v) for k, v in (variables or {}).items()},
          "layer_features": [float(x) for x in layer_f],
          "arch_features": [float(x) for x in arch_f]}


# ---------------------------------------------------------------- manifest
def read_manifest(out: str | os.PathLike) -> dict:
  """``out/manifest.json``: ``schema_version``, ``feature_names``
  (``mapping``, ``layer``, ``arch``), ``feature_maxima`` and ``files`` (one
  entry per Parquet file: its metadata plus ``file``, ``rows``, ``valid``).

  Raises:
    SpecError: no manifest in ``out``.
  """
  path = Path(out) / MANIFEST
  if not path.is_file():
    raise SpecError("no dataset manifest", path=MANIFEST, where=str(out),
                    hint="Write the dataset with `jaxloop dataset ... -o "
                    f"{out}` first.")
  return json.loads(path.read_text())


def _add_to_manifest(out: Path, meta: dict, info: DatasetInfo) -> None:
  """Adds (or replaces) the file's entry in ``out/manifest.json``
  (written to a temporary file, then renamed)."""
  path = out / MANIFEST
  manifest = json.loads(path.read_text()) if path.is_file() else {}
  manifest.update(
      schema_version=SCHEMA_VERSION,
      feature_names={"mapping": features.mapping_feature_names(),
                     "layer": features.layer_feature_names(),
                     "arch": features.arch_feature_names()},
      feature_maxima={"levels": features.MAX_LEVELS,
                      "dims": features.MAX_DIMS,
                      "dataspaces": features.MAX_DATASPACES})
  entry = dict(meta, file=info.file, rows=info.rows, valid=info.valid)
  files = [f for f in manifest.get("files", []) if f["file"] != info.file]
  manifest["files"] = files + [entry]
  tmp = path.with_suffix(".json.partial")
  tmp.write_text(json.dumps(manifest, indent=1))
  os.replace(tmp, path)


def holdout_split(manifest: dict, by: str, holdout: Sequence[str]
                  ) -> tuple[list[dict], list[dict]]:
  """``(train, test)`` manifest entries: ``test`` holds the files whose
  ``by`` (``layer`` or ``arch``) is in ``holdout``.

  Raises:
    SpecError: ``by`` is neither, or a held-out name is in no file.
  """
  if by not in ("layer", "arch"):
    raise SpecError(f"cannot split by '{by}'", path="by",
                    hint="Split by layer or arch.")
  known = {f[by] for f in manifest["files"]}
  missing = sorted(set(holdout) - known)
  if missing:
    raise SpecError(f"held-out {by} {missing} not in the dataset",
                    path=by, hint="Known: " + ", ".join(sorted(known)))
  test = [f for f in manifest["files"] if f[by] in set(holdout)]
  return [f for f in manifest["files"] if f[by] not in set(holdout)], test


# ----------------------------------------------------------------- reading
def read_dataset(path: str | os.PathLike, columns=None
                 ) -> tuple[pa.Table, dict]:
  """``(table, metadata)`` of one dataset file (metadata: the module
  docstring's ``jaxloop.dataset`` JSON).

  Raises:
    SpecError: the file is not a jaxloop dataset of this schema version.
  """
  table = pq.read_table(str(path), columns=columns)
  raw = (table.schema.metadata or {}).get(METADATA_KEY)
  if raw is None:
    raise SpecError("not a jaxloop dataset (no jaxloop.dataset metadata)",
                    where=str(path), hint="Write it with `jaxloop dataset`.")
  meta = json.loads(raw)
  if meta.get("schema_version") != SCHEMA_VERSION:
    raise SpecError(f"dataset schema {meta.get('schema_version')}, this "
                    f"jaxloop reads {SCHEMA_VERSION}", where=str(path),
                    hint="Write the dataset again with this jaxloop.")
  return table, meta


def table_mapping(table: pa.Table, meta: dict) -> Mapping:
  """The rows' mappings (numpy ``Mapping`` ``[B, L, D]``/``[B, L, S]``)."""
  return columns.table_mapping(table, columns.Layout.from_json(
      meta["layout"]))


def level_stats(table: pa.Table, meta: dict, name: str) -> np.ndarray:
  """``f64[B, L]`` of a per-level statistic (``level_energy_pj``,
  ``level_reads``, ``level_fills``, ``level_updates``)."""
  return columns.level_stats(table, columns.Layout.from_json(
      meta["layout"]), name)
