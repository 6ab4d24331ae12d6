"""Bounded-memory streaming evaluation of mapping streams (issue #5).

``stream_evaluate`` pulls fixed-size chunks of mappings from a source, runs
ONE compiled function per chunk (model + reduction; the tail chunk is padded
and masked) and keeps only a small on-device :class:`StreamState`: the
running top-k (objective, stream position and the mappings), the best
mapping per metric (energy, cycles, EDP), evaluated/valid counts and a
histogram of ``log10(objective)``.  Host memory stays flat whatever the
number of mappings.

Sources:

* any iterable of ``Mapping`` batches (numpy or jax; any lengths, they are
  re-chunked), e.g. :func:`sample_chunks` or ``Mapspace.enumerate_chunks``;
* a :class:`MapspaceSource`: uniform samples of a ``Mapspace`` drawn ON
  DEVICE inside the same compiled function from ``fold_in(key, chunk_id)``,
  so no mapping crosses the host (10^9 mappings cost 10^9 / chunk calls).

With more than one local device each chunk's batch axis is split over a 1-D
mesh (:mod:`jaxloop.shard`); results do not depend on the device count.
Ties in the objective go to the earlier stream position, as in a stable
sort.
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

from jaxloop.errors import SpecError
from jaxloop.mapspace import SPATIAL_X, SPATIAL_Y, TEMPORAL, Mapspace
from jaxloop.model import blocks
from jaxloop import shard
from jaxloop.search.objective import parse_objective
from jaxloop.structure import Structure
from jaxloop.types import FACTOR_DTYPE, ArchParams, Mapping, _pytree

METRICS = ("energy", "cycles", "edp")
_METRIC_OF = {"energy": 0, "delay": 1, "edp": 2}
# log10 range of the histogram per metric: pJ, cycles, J*cycles.
DEFAULT_RANGE = {0: (0.0, 16.0), 1: (0.0, 16.0), 2: (-12.0, 12.0)}


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


# ------------------------------------------------------------------ sources
class MapspaceSource:
  """``count`` uniform samples of a mapspace, drawn on device.

  The same distribution as :meth:`Mapspace.sample` (the mapspace's exact
  dynamic program over spatial products, random loop orders after the fixed
  prefixes, random free bypass bits), written in ``jax.numpy`` so that it
  runs inside the chunk function.  Chunk ``c`` is drawn from
  ``fold_in(PRNGKey(seed), c)``: the stream depends on (seed, chunk) only,
  not on the device or process count.

  Attributes:
    mapspace: the mapspace.
    count: number of mappings in the stream.
    seed: PRNG seed.
  """

  def __init__(self, mapspace: Mapspace, count: int, seed: int = 0):
    self.mapspace, self.count, self.seed = mapspace, int(count), int(seed)
    ms = mapspace
    self._dims = [(np.asarray(c, np.float64), np.asarray(t, np.int64),
                   np.asarray(ds.group_count, np.int64),
                   np.asarray(ds.members, np.int64),
                   np.asarray(ds.offsets, np.int64),
                   np.asarray(ds.table, np.int64))
                  for c, t, ds in zip(ms._cum, ms._trans, ms.dims)]

  # The compiled chunk function depends on the mapspace only (count and
  # seed are runtime values), so sources of one mapspace share it.
  def __hash__(self):
    return hash(id(self.mapspace))

  def __eq__(self, other):
    return (isinstance(other, MapspaceSource)
            and other.mapspace is self.mapspace)

  def generate(self, key: jax.Array, n: int) -> Mapping:
    """``n`` mappings (jax arrays ``[n, L, D]``/``[n, L, S]``); traceable.

    Row b is lane ``b % C`` of block ``b // C`` of :meth:`generate_blocks`
    for any C dividing n (the draw is per mapping).
    """
    return blocks.from_blocks(self.generate_blocks(key, 1, n))

  def generate_blocks(self, key: jax.Array, num_blocks: int,
                      lanes: int) -> Mapping:
    """``num_blocks * lanes`` mappings in the blocked layout
    (:mod:`jaxloop.model.blocks`: ``[nb, L, D, C]``); traceable.

    Per-mapping draws are ``[nb, C]`` arrays (the batch reshaped, so the
    random streams do not depend on the block shape) and every field is
    built in place in its blocked layout: XLA:CPU moves data between
    layouts element by element.
    """
    nb, lanes = int(num_blocks), int(lanes)
    n, bshape = nb * lanes, (nb, lanes)
    s = self.mapspace.structure
    L, D, S = s.num_levels, s.num_dims, s.num_dataspaces
    k_fac, k_ord, k_keep = jax.random.split(key, 3)
    fkeys = jax.random.split(k_fac, 2 * D)
    state = jnp.zeros(bshape, jnp.int64)
    picks = []
    for d, (cum, trans, gcount, members, offsets, _) in enumerate(
        self._dims):
      c = jnp.asarray(cum)[state]                              # [nb, C, G]
      u = jax.random.uniform(fkeys[2 * d], (n,), jnp.float64).reshape(bshape)
      g = jnp.minimum(jnp.sum(u[..., None] >= c, axis=-1), c.shape[-1] - 1)
      cnt = jnp.asarray(gcount)[g]
      v = jax.random.uniform(fkeys[2 * d + 1], (n,),
                             jnp.float64).reshape(bshape)
      pick = jnp.minimum((v * cnt).astype(jnp.int64), cnt - 1)
      fidx = jnp.asarray(members)[jnp.asarray(offsets)[g] + pick]
      state = jnp.asarray(trans)[state, g]
      picks.append(fidx)
    temporal, spatial_x, spatial_y = self._factor_fields(
        jnp.stack(picks, axis=1))                             # [nb, D, C]

    okeys = jax.random.split(k_ord, L)
    levels = []
    for l in range(L):
      pre = np.asarray(self.mapspace.prefix[l], np.int32)
      free = np.asarray(self.mapspace.free_order[l], np.int32)
      if s.is_dummy[l] or not len(free):
        base = pre if not s.is_dummy[l] else np.zeros(0, np.int32)
        rest = np.asarray([d for d in range(D) if d not in base], np.int32)
        levels.append(jnp.broadcast_to(
            jnp.asarray(np.concatenate([base, rest]))[:, None],
            (nb, D, lanes)))
        continue
      keys = jax.random.uniform(okeys[l], (n, len(free)))
      shuffled = _sort_by_keys(
          jnp.moveaxis(keys.reshape(bshape + (len(free),)), -1, 0), free)
      levels.append(jnp.concatenate(
          [jnp.broadcast_to(jnp.asarray(pre)[:, None], (nb, len(pre), lanes)),
           jnp.moveaxis(shuffled, 0, 1)], axis=1))
    order = jnp.stack(levels, axis=1).astype(jnp.int32)     # [nb, L, D, C]
    keep = jnp.broadcast_to(
        jnp.asarray(self.mapspace.keep_rule == 1)[..., None], (nb, L, S, lanes))
    free_keep = self.mapspace.free_keep
    if len(free_keep):
      bits = jax.random.uniform(k_keep, (n, len(free_keep))) < 0.5
      keep = keep.at[:, free_keep[:, 0], free_keep[:, 1]].set(
          jnp.moveaxis(bits.reshape(bshape + (len(free_keep),)), -1, 1))
    return Mapping(temporal=temporal, spatial_x=spatial_x,
                   spatial_y=spatial_y, order=order, keep=keep)

  def _factor_fields(self, picks: jax.Array) -> tuple:
    """``(temporal, spatial_x, spatial_y)`` ``[nb, L, D, C]`` of the picked
    factorizations ``picks [nb, D, C]`` (row of each dim's table).

    Only the (field, level) columns that vary in some table are gathered
    (one gather per field from all dims' tables in one flat array); the
    others (storage-less levels' temporal factors, spatial factors of
    levels without fan-out) are constants.
    """
    L = self.mapspace.structure.num_levels
    tables = [np.asarray(dim[-1]) for dim in self._dims]     # [F_d, 3L]
    flat = jnp.asarray(np.concatenate([t.reshape(-1) for t in tables])
                       .astype(FACTOR_DTYPE))
    first = np.cumsum([0] + [t.size for t in tables[:-1]])  # of dim d
    row = picks * (3 * L) + first[None, :, None]             # [nb, D, C]
    columns = np.stack([t.min(axis=0) != t.max(axis=0) for t in tables])
    fields = []
    for f in (TEMPORAL, SPATIAL_X, SPATIAL_Y):
      varying = [l for l in range(L) if columns[:, f * L + l].any()]
      if varying:
        got = flat[row[:, None] + (f * L + np.asarray(varying))[
            None, :, None, None]]                             # [nb,V,D,C]
      parts = []
      for l in range(L):
        if l in varying:
          k = varying.index(l)
          parts.append(got[:, k:k + 1])
        else:
          const = np.asarray([t[0, f * L + l] for t in tables])
          parts.append(jnp.broadcast_to(
              jnp.asarray(const.astype(FACTOR_DTYPE))[None, None, :, None],
              (row.shape[0], 1) + row.shape[1:]))
      fields.append(jnp.concatenate(parts, axis=1))
    return tuple(fields)


def sample_chunks(mapspace: Mapspace, count: int, chunk: int = 65536,
                  seed: int = 0) -> Iterator[Mapping]:
  """Host-side source: ``count`` uniform samples in numpy chunks."""
  rng = np.random.default_rng(seed)
  for start in range(0, int(count), int(chunk)):
    yield mapspace.sample(rng, min(int(chunk), int(count) - start))


def _rechunk(source: Iterable[Mapping], chunk: int
             ) -> Iterator[tuple[Mapping, int]]:
  """``(numpy Mapping [chunk], rows)``: fixed-size chunks, the last padded."""
  buf, held = [], 0
  for m in source:
    m = jax.tree.map(np.asarray, m)
    n = int(m.temporal.shape[0])
    if not n:
      continue
    buf.append(m)
    held += n
    while held >= chunk:
      allm = (buf[0] if len(buf) == 1 else
              jax.tree.map(lambda *a: np.concatenate(a), *buf))
      yield jax.tree.map(lambda a: a[:chunk], allm), chunk
      rest = jax.tree.map(lambda a: a[chunk:], allm)
      held -= chunk
      buf = [rest] if held else []
  if held:
    allm = (buf[0] if len(buf) == 1 else
            jax.tree.map(lambda *a: np.concatenate(a), *buf))
    yield shard.pad_batch(allm, chunk), held


def _sort_by_keys(keys: jax.Array, values: np.ndarray) -> jax.Array:
  """``values[argsort(keys)]`` per mapping, ``[k, *batch]`` (stable, k
  small).

  Built from pairwise comparisons: value a lands at its rank, the number
  of keys before it (ties broken by position, as a stable sort does).
  ``k**2`` elementwise ops per mapping instead of a comparison sort per
  mapping, which is XLA:CPU's slowest kernel in the on-device draw.
  """
  k = keys.shape[0]
  pos = np.arange(k)
  extra = (None,) * (keys.ndim - 1)
  before = ((keys[None] < keys[:, None])
            | ((keys[None] == keys[:, None])
               & (pos[None, :] < pos[:, None])[(...,) + extra]))  # [a, b, ...]
  rank = jnp.sum(before, axis=1, dtype=jnp.int32)                  # [a, ...]
  slots = np.arange(k, dtype=np.int32)
  values = np.asarray(values, np.int32)
  return jnp.sum(jnp.where(rank[:, None] == slots[(None, slice(None)) + extra],
                           values[(slice(None), None) + extra], 0),
                 axis=0, dtype=jnp.int32)                          # [k, ...]


# ---------------------------------------------------------------- reduction
def init_state(structure: Structure, topk: int, bins: int) -> StreamState:
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


def _take(tree, idx):
  return jax.tree.map(lambda a: a[idx], tree)


def _reduce(structure: Structure, metric: int, lo: float, hi: float,
            state: StreamState, params: ArchParams, mapping: Mapping,
            offset: jax.Array, rows: jax.Array,
            mesh: Optional[Mesh] = None) -> StreamState:
  """Evaluates one chunk of C mappings and folds it into ``state``.

  ``mapping`` is in the blocked layout (``[nb, L, D, lanes]``, see
  :mod:`jaxloop.model.blocks`), rows in block order.  ``offset`` is the
  stream position of row 0; rows ``>= rows`` are padding.  With a
  ``mesh`` each device evaluates its share of the blocks.
  """
  pick = lambda st: (st.valid, st.energy_total, st.cycles)
  if mesh is None:
    stats = blocks.evaluate_blocks(structure, params, mapping, pick=pick)
  else:
    stats = shard.per_device_batches(structure, mesh, blocked=True,
                                     pick=pick)(params, mapping)
  valid, energy, cycles = jax.tree.map(blocks.flat, stats)
  C = valid.shape[0]
  K = state.topk_objective.shape[0]
  bins = state.histogram.shape[0]
  pos = offset + jnp.arange(C, dtype=jnp.int64)
  live = jnp.arange(C) < rows
  ok = valid & live
  energy = energy.astype(jnp.float64)
  cycles = cycles.astype(jnp.float64)
  metrics = jnp.stack([energy, cycles, energy * 1e-12 * cycles])   # [M, C]
  metrics = jnp.where(ok[None, :], metrics, jnp.inf)
  obj = metrics[metric]

  # Top-k: the chunk's best K, then merge with the running K.  lax.top_k
  # puts the lower index first among equals, and the running entries come
  # first in the concatenation, so ties go to the earlier position.
  cand = _smallest(obj, min(K, C))
  all_obj = jnp.concatenate([state.topk_objective, obj[cand]])
  all_pos = jnp.concatenate([state.topk_index, pos[cand]])
  all_map = jax.tree.map(lambda a, b: jnp.concatenate([a, b]),
                         state.topk_mapping, blocks.take(mapping, cand))
  _, sel = jax.lax.top_k(-all_obj, K)
  top_obj = all_obj[sel]
  top_pos = jnp.where(jnp.isfinite(top_obj), all_pos[sel], -1)

  # Best per metric (argmin takes the first of equals; strict < keeps the
  # earlier chunk's entry on a tie).
  arg = jnp.argmin(metrics, axis=1)                                 # [M]
  val = metrics[jnp.arange(metrics.shape[0]), arg]
  better = val < state.best_value
  chunk_best = blocks.take(mapping, arg)
  best_map = jax.tree.map(
      lambda new, old: jnp.where(
          better.reshape((-1,) + (1,) * (new.ndim - 1)), new, old),
      chunk_best, state.best_mapping)

  logv = jnp.log10(jnp.where(ok, obj, 1.0))
  b = jnp.clip(jnp.floor((logv - lo) / (hi - lo) * bins), 0, bins - 1)
  hist = state.histogram + jnp.zeros(bins, jnp.int64).at[
      b.astype(jnp.int32)].add(ok.astype(jnp.int64))
  return StreamState(
      topk_objective=top_obj, topk_index=top_pos,
      topk_mapping=_take(all_map, sel),
      best_value=jnp.where(better, val, state.best_value),
      best_index=jnp.where(better, pos[arg], state.best_index),
      best_mapping=best_map,
      evaluated=state.evaluated + jnp.minimum(rows, C).astype(jnp.int64),
      valid=state.valid + jnp.sum(ok).astype(jnp.int64),
      histogram=hist)


@functools.lru_cache(maxsize=32)
def _host_step(structure: Structure, metric: int, lo: float, hi: float,
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


@functools.lru_cache(maxsize=32)
def _device_step(structure: Structure, metric: int, lo: float, hi: float,
                 devices: tuple, source: MapspaceSource, chunk: int,
                 lanes: int):
  """Jitted ``(state, params, key, chunk_id, rows) -> state``; draws on
  device, in the blocked layout (``chunk // lanes`` blocks)."""
  mesh = shard.batch_mesh(devices) if len(devices) > 1 else None

  def step(state, params, key, chunk_id, rows):
    mapping = source.generate_blocks(
        jax.random.fold_in(key, chunk_id.astype(jnp.uint32)),
        chunk // lanes, lanes)
    if mesh is not None:
      mapping = jax.lax.with_sharding_constraint(
          mapping, shard.batch_sharding(mesh))
    return _reduce(structure, metric, lo, hi, state, params, mapping,
                   chunk_id.astype(jnp.int64) * chunk, rows, mesh=mesh)

  if mesh is None:
    return jax.jit(step)
  rep = shard.replicated(mesh)
  return jax.jit(step, in_shardings=rep, out_shardings=rep)


def chunk_layout(chunk: int, devices: int) -> tuple[int, int]:
  """``(chunk, lanes)``: a chunk of whole blocks of ``lanes`` mappings
  (:func:`jaxloop.model.blocks.default_lanes` or fewer), the same number of
  blocks on each device."""
  lanes = min(blocks.default_lanes(),
              shard.round_up(chunk, devices) // devices)
  return shard.round_up(chunk, lanes * devices), lanes


# --------------------------------------------------------------------- API
def stream_evaluate(model, source, *more, params: Optional[ArchParams] = None,
                    chunk: int = 65536, objective: str = "edp",
                    topk: int = 16, histogram_bins: int = 64,
                    histogram_range: Optional[tuple[float, float]] = None,
                    devices: Optional[Sequence[jax.Device]] = None,
                    part: tuple[int, int] = (0, 1),
                    on_chunk: Optional[Callable[[int, int], None]] = None
                    ) -> StreamResult:
  """Evaluates a stream of mappings in fixed chunks; reduces on device.

  Call as ``stream_evaluate(workload, source, ...)`` or
  ``stream_evaluate(structure, params, source, ...)``.

  Args:
    model: an ``api.Workload``, or a ``Structure`` followed by its params.
    source: an iterable of ``Mapping`` batches (any lengths) or a
      :class:`MapspaceSource` (drawn on device).
    params: the ``ArchParams`` (alternative to the positional form).
    chunk: mappings per compiled call (rounded up to whole blocks per
      device, see :func:`chunk_layout`).  Memory is O(chunk), independent of the stream length.
    objective: ``edp``, ``energy`` or ``delay``/``cycles`` (ranks the top-k
      and the histogram).
    topk: entries kept.
    histogram_bins, histogram_range: bins over ``log10(objective)``
      (default range: pJ 1e0..1e16, cycles 1e0..1e16, EDP 1e-12..1e12).
    devices: devices of the 1-D batch mesh (default all local devices).
    part: ``(index, count)``: evaluate only chunks ``c`` with
      ``c % count == index`` (multi-process runs; combine the results with
      :func:`merge_results`).
    on_chunk: ``on_chunk(chunks_done, rows_dispatched)`` after each
      dispatched chunk (progress, memory probes).

  Returns:
    A numpy :class:`StreamResult`.

  Raises:
    SpecError: an unknown objective or a lexicographic (multi-metric) one.
  """
  if isinstance(source, ArchParams):
    params, source = source, (more[0] if more else None)
  structure = getattr(model, "structure", model)
  if params is None:
    params = getattr(model, "params", None)
  if not isinstance(structure, Structure) or params is None:
    raise TypeError("stream_evaluate needs a Workload, or a Structure and "
                    "its ArchParams")
  names = parse_objective(objective)
  if len(names) != 1:
    raise SpecError(f"streaming ranks by one metric, got {names}",
                    path="objective", hint="Use energy, delay or edp.")
  metric = _METRIC_OF[names[0]]
  lo, hi = (DEFAULT_RANGE[metric] if histogram_range is None
            else tuple(float(x) for x in histogram_range))
  devs = tuple(jax.local_devices() if devices is None else devices)
  chunk, lanes = chunk_layout(chunk, len(devs))
  index, count = int(part[0]), int(part[1])
  mesh = shard.batch_mesh(devs) if len(devs) > 1 else None
  put = ((lambda x: jax.device_put(x, shard.replicated(mesh)))
         if mesh is not None else jax.device_put)
  state = put(init_state(structure, int(topk), int(histogram_bins)))
  params = put(jax.tree.map(jnp.asarray, params))
  t0 = time.perf_counter()
  pending: list = []     # at most two chunks in flight: bounded memory
  done = 0
  if isinstance(source, MapspaceSource):
    step = _device_step(structure, metric, lo, hi, devs, source, chunk,
                        lanes)
    key = put(jax.random.PRNGKey(source.seed))   # an argument: no retrace
    total = -(-source.count // chunk)
    for c in range(index, total, count):
      rows = min(chunk, source.count - c * chunk)
      state = step(state, params, key, np.int64(c), np.int64(rows))
      done = _throttle(pending, state, done, rows, on_chunk)
  else:
    step = _host_step(structure, metric, lo, hi, devs)
    bat = (shard.batch_sharding(mesh) if mesh is not None else None)
    for c, (m, rows) in enumerate(_rechunk(source, chunk)):
      if c % count != index:
        continue
      m = blocks.to_blocks(m, lanes)
      m = jax.device_put(m, bat) if bat is not None else jax.device_put(m)
      state = step(state, params, m, np.int64(c * chunk), np.int64(rows))
      done = _throttle(pending, state, done, rows, on_chunk)
  state = jax.tree.map(np.asarray, state)
  elapsed = time.perf_counter() - t0
  return _result(state, names[0], lo, hi, done, step._cache_size(), elapsed)


def _throttle(pending: list, state, done: int, rows: int, on_chunk) -> int:
  """Waits for the chunk before last, so at most two are in flight."""
  pending.append(state)
  if len(pending) > 2:
    jax.block_until_ready(pending.pop(0))
  done += 1
  if on_chunk is not None:
    on_chunk(done, rows)
  return done


def _result(state: StreamState, objective: str, lo: float, hi: float,
            chunks: int, compiles: int, elapsed: float) -> StreamResult:
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
