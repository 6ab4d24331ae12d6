"""Bounded-memory evaluation of any number of mappings: :func:`stream`.

>>> res = jaxloop.streaming.stream(workload, count=10**7)     # drawn on device
>>> res = jaxloop.streaming.stream(workload, source=workload.mapspace
...                             .enumerate_chunks(65536))   # given batches
>>> res.topk_objective, res.best["energy"], res.histogram

Mappings are evaluated in fixed-size chunks, one compiled call per chunk
(the model and a reduction; the last chunk is padded and its padding
masked).  Only a small on-device :class:`StreamState` is kept: the running
top-k (objective, stream position and the mappings), the best mapping per
metric (energy, cycles, EDP), evaluated/valid counts and a histogram of
``log10(objective)``.  Memory stays flat whatever the number of mappings.

Two sources:

* ``count=N``: N uniform samples of ``workload.mapspace``, drawn on the
  device inside each chunk's compiled call
  (:meth:`jaxloop.Mapspace.draw_blocks`, in the blocked layout the model
  evaluates); chunk ``c`` is drawn from ``fold_in(PRNGKey(seed), c)``, so
  the stream depends on (seed, chunk) only, and no mapping crosses the host.
* ``source=``: any iterable of ``Mapping`` batches (numpy or jax, any
  lengths; re-chunked on the host), e.g. ``Mapspace.enumerate_chunks``.

With more than one device each chunk's blocks are split over a 1-D mesh
(:mod:`jaxloop.shard`); results do not depend on the device count.  Ties in
the objective go to the earlier stream position, as in a stable sort.
"""
from __future__ import annotations

import dataclasses
import functools
import time
from typing import Callable, Iterable, Iterator, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from jaxloop import shard
from jaxloop.errors import SpecError
from jaxloop.mapspace import Mapspace
from jaxloop.model import blocks
from jaxloop.precision import exact
from jaxloop.mapper.objective import parse_objective
from jaxloop.structure import Structure
from jaxloop.types import FACTOR_DTYPE, ArchParams, Mapping, Stats, _pytree

__all__ = ["stream", "StreamResult", "merge_results", "METRICS",
           "DEFAULT_RANGE"]

METRICS = ("energy", "cycles", "edp")
_METRIC_OF = {"energy": 0, "delay": 1, "edp": 2}
# log10 range of the histogram per metric: pJ, cycles, J*cycles.
DEFAULT_RANGE = {0: (0.0, 16.0), 1: (0.0, 16.0), 2: (-12.0, 12.0)}
# The statistics a stream reads; the model writes no others.
_RANKED = ("valid", "energy_total", "cycles")


@_pytree
class StreamState:
  """On-device running reduction of a stream (K = top-k, M = 3 metrics).

  Attributes:
    topk_objective: ``f64[K]`` ascending; ``inf`` marks an empty slot.
    topk_index: ``i64[K]`` stream position of each entry (-1 when empty).
    topk_mapping: ``Mapping`` with leading axis ``K``.
    best_value: ``f64[M]`` lowest energy (pJ), cycles and EDP (J*cycles)
      of the valid mappings.
    best_index: ``i64[M]`` their stream positions (-1 when none).
    best_mapping: ``Mapping`` with leading axis ``M``.
    evaluated, valid: ``i64[]`` counts (padding excluded).
    histogram: ``i64[bins]`` valid mappings per ``log10(objective)`` bin;
      values outside the range land in the first or last bin.
  """
  topk_objective: jax.Array
  topk_index: jax.Array
  topk_mapping: Mapping
  best_value: jax.Array
  best_index: jax.Array
  best_mapping: Mapping
  evaluated: jax.Array
  valid: jax.Array
  histogram: jax.Array


@dataclasses.dataclass
class StreamResult:
  """What a stream produced (numpy).

  Attributes:
    objective: the ranking metric (``energy``, ``delay`` or ``edp``).
    topk_objective: ``[k]`` best objective values, ascending (valid only).
    topk_index: ``[k]`` their stream positions.
    topk_mapping: ``Mapping`` ``[k, ...]``.
    best: ``{metric: (value, index, Mapping)}`` for energy (pJ), cycles and
      edp (J*cycles); ``(inf, -1, None)`` when nothing was valid.
    evaluated, valid: counts.
    histogram: ``[bins]`` counts; ``bin_edges``: ``[bins + 1]`` in log10.
    chunks: compiled calls made; ``compiles``: compilations of the chunk
      function in this process (1 after any number of chunks).
    elapsed: seconds (compilation included).
  """
  objective: str
  topk_objective: np.ndarray
  topk_index: np.ndarray
  topk_mapping: Mapping
  best: dict
  evaluated: int
  valid: int
  histogram: np.ndarray
  bin_edges: np.ndarray
  chunks: int = 0
  compiles: int = 0
  elapsed: float = 0.0

  @property
  def rate(self) -> float:
    """Mappings per second over the whole run."""
    return self.evaluated / self.elapsed if self.elapsed > 0 else 0.0


# --------------------------------------------------------------------- API
@exact
def stream(workload, source: Optional[Iterable[Mapping]] = None, *,
           count: Optional[int] = None, seed: int = 0, chunk: int = 65536,
           objective: str = "edp", topk: int = 16, histogram_bins: int = 64,
           histogram_range: Optional[tuple[float, float]] = None,
           devices: Optional[Sequence[jax.Device]] = None,
           part: tuple[int, int] = (0, 1),
           on_chunk: Optional[Callable[[int, int], None]] = None
           ) -> StreamResult:
  """Evaluates a stream of mappings in fixed chunks; reduces on the device.

  Args:
    workload: a :class:`jaxloop.Workload`.
    source: an iterable of ``Mapping`` batches (leaves ``[B, L, D]``, any
      B); give this or ``count``.
    count: draw this many mappings uniformly from ``workload.mapspace`` on
      the device; give this or ``source``.
    seed: PRNG seed of the drawn stream.
    chunk: mappings per compiled call, rounded up to whole blocks per
      device.  Memory is O(chunk), whatever the stream's length.
    objective: ``edp``, ``energy`` or ``delay``/``cycles``: ranks the top-k
      (``topk`` entries kept) and the histogram.
    histogram_bins, histogram_range: bins over ``log10(objective)``
      (default range: pJ 1e0..1e16, cycles 1e0..1e16, EDP 1e-12..1e12).
    devices: devices of the 1-D batch mesh (default all local devices).
    part: ``(index, parts)``: evaluate only chunks ``c`` with
      ``c % parts == index`` (multi-process runs; combine the results with
      :func:`merge_results`).
    on_chunk: ``on_chunk(chunks_done, rows_dispatched)`` after each
      dispatched chunk (progress, memory probes).

  Returns:
    A numpy :class:`StreamResult`.

  Raises:
    TypeError: both or neither of ``source`` and ``count``.
    SpecError: an unknown objective or a lexicographic (multi-metric) one.
  """
  if (source is None) == (count is None):
    raise TypeError("stream needs exactly one of source= (Mapping batches) "
                    "and count= (mappings to draw from workload.mapspace)")
  name, metric, (lo, hi) = _ranking(objective, histogram_range)
  devs = tuple(jax.local_devices() if devices is None else devices)
  chunk, lanes = _chunk_layout(chunk, len(devs))
  mesh = shard.batch_mesh(devs) if len(devs) > 1 else None
  put = _put_replicated(mesh)
  s = workload.structure
  state = put(_empty_state(s, int(topk), int(histogram_bins)))
  params = put(jax.tree.map(jnp.asarray, workload.params))
  t0 = time.perf_counter()
  if count is not None:
    step = _drawing_step(s, metric, lo, hi, devs, workload.mapspace, chunk,
                         lanes)
    key = put(jax.random.PRNGKey(seed))
    inputs = _drawn_chunks(key, int(count), chunk, part)
  else:
    step = _given_step(s, metric, lo, hi, devs)
    inputs = _given_chunks(source, chunk, lanes, mesh, part)
  state, chunks = _run(step, state, params, inputs, on_chunk)
  state = jax.tree.map(np.asarray, state)
  return _result(state, name, lo, hi, chunks, step._cache_size(),
                 time.perf_counter() - t0)


def merge_results(results: Sequence[StreamResult],
                  topk: Optional[int] = None) -> StreamResult:
  """Combines results of disjoint parts of one stream (numpy).

  Top-k entries are merged by (objective, stream position), bests by
  (value, position), counts and histograms are summed: the merge of the
  parts equals the single run over the whole stream.
  """
  k = topk or max(len(r.topk_objective) for r in results)
  obj = np.concatenate([r.topk_objective for r in results])
  pos = np.concatenate([r.topk_index for r in results])
  maps = jax.tree.map(lambda *a: np.concatenate(a),
                      *[r.topk_mapping for r in results])
  sel = np.lexsort((pos, obj))[:k]
  best = {}
  for name in METRICS:
    cands = [r.best[name] for r in results if r.best[name][2] is not None]
    best[name] = (min(cands, key=lambda e: (e[0], e[1])) if cands
                  else (float("inf"), -1, None))
  r0 = results[0]
  return StreamResult(
      objective=r0.objective, topk_objective=obj[sel], topk_index=pos[sel],
      topk_mapping=_take(maps, sel), best=best,
      evaluated=sum(r.evaluated for r in results),
      valid=sum(r.valid for r in results),
      histogram=np.sum([r.histogram for r in results], axis=0),
      bin_edges=r0.bin_edges, chunks=sum(r.chunks for r in results),
      compiles=max(r.compiles for r in results),
      elapsed=max(r.elapsed for r in results))


# ------------------------------------------------------------------ driving
def _ranking(objective: str, histogram_range) -> tuple:
  """``(name, index into METRICS, (lo, hi))`` of a one-metric objective:
  its name, its metric and the log10 range of its histogram
  (``histogram_range`` or the metric's :data:`DEFAULT_RANGE`).

  Raises:
    SpecError: an unknown objective or a lexicographic one.
  """
  names = parse_objective(objective)
  if len(names) != 1:
    raise SpecError(f"streaming ranks by one metric, got {names}",
                    path="objective", hint="Use energy, delay or edp.")
  metric = _METRIC_OF[names[0]]
  span = (DEFAULT_RANGE[metric] if histogram_range is None
          else tuple(float(x) for x in histogram_range))
  return names[0], metric, span


def _chunk_layout(chunk: int, devices: int) -> tuple[int, int]:
  """``(chunk, lanes)``: a chunk of whole blocks of ``lanes`` mappings
  (:func:`jaxloop.model.blocks.default_lanes` or fewer), the same number of
  blocks on each device."""
  lanes = min(blocks.default_lanes(),
              shard.round_up(chunk, devices) // devices)
  return shard.round_up(chunk, lanes * devices), lanes


def _put_replicated(mesh: Optional[Mesh]) -> Callable:
  """``device_put`` of a pytree whole on every device of ``mesh`` (or on
  the default device)."""
  if mesh is None:
    return jax.device_put
  return lambda x: jax.device_put(x, shard.replicated(mesh))


def _drawn_chunks(key: jax.Array, count: int, chunk: int,
                  part: tuple[int, int]) -> Iterator[tuple[tuple, int]]:
  """``((key, chunk_id, rows), rows)`` of this part's chunks of a drawn
  stream of ``count`` mappings (the last chunk holds ``rows < chunk``)."""
  index, parts = int(part[0]), int(part[1])
  for c in range(index, -(-count // chunk), parts):
    rows = min(chunk, count - c * chunk)
    yield (key, np.int64(c), np.int64(rows)), rows


def _given_chunks(source: Iterable[Mapping], chunk: int, lanes: int,
                  mesh: Optional[Mesh], part: tuple[int, int]
                  ) -> Iterator[tuple[tuple, int]]:
  """``((blocked mapping, offset, rows), rows)`` of this part's chunks of
  ``source``, blocked on the host and put on the device(s)."""
  index, parts = int(part[0]), int(part[1])
  where = shard.batch_sharding(mesh) if mesh is not None else None
  for c, (m, rows) in enumerate(_rechunk(source, chunk)):
    if c % parts == index:
      m = jax.device_put(blocks.to_blocks(m, lanes), where)
      yield (m, np.int64(c * chunk), np.int64(rows)), rows


def _rechunk(source: Iterable[Mapping], chunk: int
             ) -> Iterator[tuple[Mapping, int]]:
  """``(numpy Mapping [chunk], rows)``: fixed-size chunks of the batches of
  ``source``; the last is padded (:func:`blocks.pad_rows`) after ``rows``.
  """
  concat = lambda parts: (parts[0] if len(parts) == 1 else jax.tree.map(
      lambda *a: np.concatenate(a), *parts))
  held: list = []
  rows = 0
  for m in source:
    m = jax.tree.map(np.asarray, m)
    if not m.temporal.shape[0]:
      continue
    held.append(m)
    rows += int(m.temporal.shape[0])
    while rows >= chunk:
      whole = concat(held)
      yield jax.tree.map(lambda a: a[:chunk], whole), chunk
      rows -= chunk
      held = [jax.tree.map(lambda a: a[chunk:], whole)] if rows else []
  if rows:
    yield blocks.pad_rows(concat(held), chunk), rows


def _run(step: Callable, state: StreamState, params: ArchParams,
         inputs: Iterator[tuple[tuple, int]], on_chunk) -> tuple:
  """Folds every chunk of ``inputs`` into ``state``; ``(state, chunks)``.

  At most two chunks are in flight (the one before last is waited for), so
  memory stays bounded while the host prepares the next chunk.
  """
  pending, done = [], 0
  for args, rows in inputs:
    state = step(state, params, *args)
    pending.append(state)
    if len(pending) > 2:
      jax.block_until_ready(pending.pop(0))
    done += 1
    if on_chunk is not None:
      on_chunk(done, rows)
  return state, done


@functools.lru_cache(maxsize=32)
def _given_step(structure: Structure, metric: int, lo: float, hi: float,
                devices: tuple):
  """Jitted ``(state, params, mapping, offset, rows) -> state``; the
  mapping chunk comes in the blocked layout."""
  mesh = shard.batch_mesh(devices) if len(devices) > 1 else None
  fn = functools.partial(_reduce, structure, metric, lo, hi, mesh=mesh)
  if mesh is None:
    return jax.jit(fn)
  rep, bat = shard.replicated(mesh), shard.batch_sharding(mesh)
  return jax.jit(fn, in_shardings=(rep, rep, bat, rep, rep),
                 out_shardings=rep)


def draw_chunk(mapspace: Mapspace, key: jax.Array, chunk_id: jax.Array,
               chunk: int, lanes: int, mesh: Optional[Mesh]) -> Mapping:
  """Chunk ``chunk_id`` of the stream drawn from ``key`` (traceable):
  ``Mapspace.draw_blocks`` from ``fold_in(key, chunk_id)``, ``chunk //
  lanes`` blocks ``[nb, L, D, C]``, split over ``mesh`` when given."""
  mapping = mapspace.draw_blocks(
      jax.random.fold_in(key, chunk_id.astype(jnp.uint32)),
      chunk // lanes, lanes)
  if mesh is not None:
    mapping = jax.lax.with_sharding_constraint(
        mapping, shard.batch_sharding(mesh))
  return mapping


@functools.lru_cache(maxsize=32)
def _drawing_step(structure: Structure, metric: int, lo: float, hi: float,
                  devices: tuple, mapspace: Mapspace, chunk: int,
                  lanes: int):
  """Jitted ``(state, params, key, chunk_id, rows) -> state``: draws chunk
  ``chunk_id`` from ``fold_in(key, chunk_id)`` on the device, in the blocked
  layout (``chunk // lanes`` blocks), and folds it in."""
  mesh = shard.batch_mesh(devices) if len(devices) > 1 else None

  def step(state, params, key, chunk_id, rows):
    mapping = draw_chunk(mapspace, key, chunk_id, chunk, lanes, mesh)
    return _reduce(structure, metric, lo, hi, state, params, mapping,
                   chunk_id.astype(jnp.int64) * chunk, rows, mesh=mesh)

  if mesh is None:
    return jax.jit(step)
  rep = shard.replicated(mesh)
  return jax.jit(step, in_shardings=rep, out_shardings=rep)


# ---------------------------------------------------------------- reduction
def _empty_state(structure: Structure, topk: int, bins: int) -> StreamState:
  """Empty :class:`StreamState` (numpy)."""
  L, D, S = structure.num_levels, structure.num_dims, structure.num_dataspaces
  M = len(METRICS)

  def maps(k):
    return Mapping(temporal=np.ones((k, L, D), FACTOR_DTYPE),
                   spatial_x=np.ones((k, L, D), FACTOR_DTYPE),
                   spatial_y=np.ones((k, L, D), FACTOR_DTYPE),
                   order=np.zeros((k, L, D), np.int32),
                   keep=np.zeros((k, L, S), bool))

  return StreamState(
      topk_objective=np.full(topk, np.inf), topk_index=np.full(topk, -1),
      topk_mapping=maps(topk), best_value=np.full(M, np.inf),
      best_index=np.full(M, -1), best_mapping=maps(M),
      evaluated=np.int64(0), valid=np.int64(0),
      histogram=np.zeros(bins, np.int64))


def _ranked_stats(stats: Stats) -> Stats:
  """The statistics of :data:`_RANKED`, the other fields None (never
  written by the model's block loop)."""
  return stats.only(_RANKED)


def _evaluate_chunk(structure: Structure, params: ArchParams,
                    mapping: Mapping, mesh: Optional[Mesh]) -> Stats:
  """``Stats`` of a blocked chunk with only :data:`_RANKED` set, each
  ``[C]`` in row order; with a ``mesh`` each device evaluates its blocks."""
  evaluate = functools.partial(blocks.evaluate_blocks, structure,
                               pick=_ranked_stats)
  if mesh is not None:
    evaluate = shard.per_device(evaluate, mesh)
  return jax.tree.map(blocks.flat, evaluate(params, mapping))


def _chunk_metrics(stats: Stats, ok: jax.Array) -> jax.Array:
  """``f64[M, C]`` energy (pJ), cycles and EDP (J*cycles) of each mapping
  (the order of :data:`METRICS`); ``inf`` where ``ok [C]`` is False."""
  metrics = jnp.stack([stats.energy_total.astype(jnp.float64),
                       stats.cycles.astype(jnp.float64),
                       stats.edp.astype(jnp.float64)])
  return jnp.where(ok[None, :], metrics, jnp.inf)


def _smallest(x: jax.Array, k: int, width: int = 64) -> jax.Array:
  """Indices of the k smallest of ``x [C]``, ascending, the lower index
  first among equals (``lax.top_k(-x, k)``'s order).

  ``lax.top_k`` sorts all of x on CPU.  Here x is cut into rows of
  ``width``: an entry among the k smallest lies in one of the k rows with
  the smallest minima (ties by row: rows hold consecutive indices), so
  only those k rows' ``k * width`` entries are ranked.
  """
  C = x.shape[0]
  if C % width or C < 4 * k * width:
    return jax.lax.top_k(-x, k)[1]
  rows = x.reshape(-1, width)
  _, r = jax.lax.top_k(-jnp.min(rows, axis=1), k)
  r = jnp.sort(r)            # candidates in index order: ties stay ordered
  _, j = jax.lax.top_k(-rows[r].reshape(-1), k)
  return r[j // width] * width + j % width


def _merge_topk(state: StreamState, obj: jax.Array, pos: jax.Array,
                mapping: Mapping) -> tuple:
  """The running top-k merged with a chunk's ``obj [C]`` at stream
  positions ``pos [C]`` (``mapping`` blocked): ``(objective [K], index
  [K], Mapping [K])``.

  The chunk's best K come first (:func:`_smallest`), then the K best of the
  running entries and those.  ``lax.top_k`` puts the lower index first
  among equals and the running entries come first, so ties go to the
  earlier position.
  """
  K = state.topk_objective.shape[0]
  cand = _smallest(obj, min(K, obj.shape[0]))
  all_obj = jnp.concatenate([state.topk_objective, obj[cand]])
  all_pos = jnp.concatenate([state.topk_index, pos[cand]])
  all_map = jax.tree.map(lambda a, b: jnp.concatenate([a, b]),
                         state.topk_mapping, blocks.take(mapping, cand))
  _, sel = jax.lax.top_k(-all_obj, K)
  top_obj = all_obj[sel]
  top_pos = jnp.where(jnp.isfinite(top_obj), all_pos[sel], -1)
  return top_obj, top_pos, _take(all_map, sel)


def _merge_best(state: StreamState, metrics: jax.Array, pos: jax.Array,
                mapping: Mapping) -> tuple:
  """The running best per metric merged with a chunk's ``metrics [M, C]``:
  ``(value [M], index [M], Mapping [M])``.

  ``argmin`` takes the first of equals, and a strict ``<`` keeps the
  earlier chunk's entry on a tie.
  """
  arg = jnp.argmin(metrics, axis=1)                                # [M]
  val = metrics[jnp.arange(metrics.shape[0]), arg]
  better = val < state.best_value
  best_map = jax.tree.map(
      lambda new, old: jnp.where(
          better.reshape((-1,) + (1,) * (new.ndim - 1)), new, old),
      blocks.take(mapping, arg), state.best_mapping)
  return (jnp.where(better, val, state.best_value),
          jnp.where(better, pos[arg], state.best_index), best_map)


def _add_to_histogram(histogram: jax.Array, obj: jax.Array, ok: jax.Array,
                      lo: float, hi: float) -> jax.Array:
  """``histogram [bins]`` plus the mappings ``ok [C]`` binned by
  ``log10(obj)`` over ``[lo, hi)`` (outliers in the end bins)."""
  bins = histogram.shape[0]
  logv = jnp.log10(jnp.where(ok, obj, 1.0))
  b = jnp.clip(jnp.floor((logv - lo) / (hi - lo) * bins), 0, bins - 1)
  return histogram + jnp.zeros(bins, jnp.int64).at[b.astype(jnp.int32)].add(
      ok.astype(jnp.int64))


def _reduce(structure: Structure, metric: int, lo: float, hi: float,
            state: StreamState, params: ArchParams, mapping: Mapping,
            offset: jax.Array, rows: jax.Array,
            mesh: Optional[Mesh] = None) -> StreamState:
  """Evaluates one chunk of C mappings and folds it into ``state``.

  Args:
    mapping: the chunk in the blocked layout (``[nb, L, D, lanes]``, see
      :mod:`jaxloop.model.blocks`), rows in block order.
    offset: the stream position of row 0.
    rows: rows ``>= rows`` are padding.
    mesh: each device evaluates its share of the blocks.
  """
  stats = _evaluate_chunk(structure, params, mapping, mesh)
  C = stats.valid.shape[0]
  pos = offset + jnp.arange(C, dtype=jnp.int64)
  ok = stats.valid & (jnp.arange(C) < rows)       # valid and not padding
  metrics = _chunk_metrics(stats, ok)                              # [M, C]
  obj = metrics[metric]
  top_obj, top_pos, top_map = _merge_topk(state, obj, pos, mapping)
  best_val, best_pos, best_map = _merge_best(state, metrics, pos, mapping)
  return StreamState(
      topk_objective=top_obj, topk_index=top_pos, topk_mapping=top_map,
      best_value=best_val, best_index=best_pos, best_mapping=best_map,
      evaluated=state.evaluated + jnp.minimum(rows, C).astype(jnp.int64),
      valid=state.valid + jnp.sum(ok).astype(jnp.int64),
      histogram=_add_to_histogram(state.histogram, obj, ok, lo, hi))


def _take(tree, idx):
  return jax.tree.map(lambda a: a[idx], tree)


def _result(state: StreamState, objective: str, lo: float, hi: float,
            chunks: int, compiles: int, elapsed: float) -> StreamResult:
  """The numpy :class:`StreamResult` of a final ``state``."""
  ok = np.isfinite(state.topk_objective)
  best = {}
  for i, name in enumerate(METRICS):
    if np.isfinite(state.best_value[i]):
      best[name] = (float(state.best_value[i]), int(state.best_index[i]),
                    _take(state.best_mapping, i))
    else:
      best[name] = (float("inf"), -1, None)
  bins = state.histogram.shape[0]
  return StreamResult(
      objective=objective, topk_objective=state.topk_objective[ok],
      topk_index=state.topk_index[ok],
      topk_mapping=_take(state.topk_mapping, ok), best=best,
      evaluated=int(state.evaluated), valid=int(state.valid),
      histogram=state.histogram, bin_edges=np.linspace(lo, hi, bins + 1),
      chunks=chunks, compiles=int(compiles), elapsed=elapsed)
