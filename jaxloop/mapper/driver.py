"""What every search shares: exact evaluation in fixed-size batches, the
top-k of distinct legal mappings, the progress log, the stopping rules
(budget, time limit and Timeloop's ``search_size``, ``victory_condition``
and ``timeout``, see :mod:`jaxloop.mapper.rules`) and the result.

Mappings are handled as :class:`~jaxloop.mapspace.Genome` rows of the
workload's mapspace (so every candidate satisfies the constraints) and
decoded to ``Mapping`` batches for the model.  The search loop computes only
:data:`SEARCH_STATS`; the final top-k is evaluated again for full ``Stats``.
"""
from __future__ import annotations

import dataclasses
import functools
import sys
import time
from typing import Callable, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from tqdm import tqdm

from jaxloop.evaluator import evaluator
from jaxloop.mapspace import Genome, Mapspace
from jaxloop.model.blocks import pad_rows
from jaxloop.model.blocks import take as blocks_take
from jaxloop.mapper import rules as rules_mod
from jaxloop.mapper.objective import Objective, objective_keys, parse_objective
from jaxloop.mapper.rules import Counters, StopRules
from jaxloop.types import Mapping, Stats, edp

# The statistics a search loop ranks and counts mappings by.
SEARCH_STATS = ("energy_total", "cycles", "valid")


def fixed_batch_evaluator(workload, batch: int,
                          stats: Optional[Sequence[str]] = SEARCH_STATS,
                          params=None) -> Callable[[Mapping], Stats]:
  """``fn(Mapping [B]) -> numpy Stats [B]`` evaluating ``batch`` rows at a
  time.

  The input is cut into chunks of ``batch`` rows and the last chunk is
  padded (:func:`jaxloop.model.blocks.pad_rows`), so the model is compiled
  for one shape whatever B.  Only the ``stats`` fields are computed (the
  others are None); ``params`` overrides the workload's ``ArchParams``.
  """
  ev = evaluator(workload, stats=stats)

  def run(mapping: Mapping) -> Stats:
    n = int(np.shape(mapping.temporal)[0])
    parts = []
    for start in range(0, n, batch):
      chunk = jax.tree.map(lambda a: np.asarray(a)[start:start + batch],
                           mapping)
      rows = int(np.shape(chunk.temporal)[0])
      out = ev(pad_rows(chunk, batch), params)
      parts.append(jax.tree.map(lambda a: np.asarray(a)[:rows], out))
    if len(parts) == 1:
      return parts[0]
    return jax.tree.map(lambda *a: np.concatenate(a), *parts)

  return run


@dataclasses.dataclass
class SearchResult:
  """What a search found; every number is the exact model's, on a legal
  mapping.

  Attributes:
    best_mapping: single numpy Mapping (None if nothing legal was found).
    best_stats: its full numpy Stats.
    best_objective: its objective key (one value per metric).
    topk: ``[(key, Mapping, Stats), ...]`` best first, distinct mappings
      (equal up to loops of factor 1 counts as the same).
    log: one row per evaluated batch: ``{time_s, evaluated, legal,
      best_objective, best_energy_pj, best_cycles, relaxed_evaluated}``.
    mapspace_size: :meth:`Mapspace.size`.
    objective: metric names.
    evaluated, legal: exact evaluations and how many were legal (a batch
      cut by a rule of :mod:`jaxloop.mapper.rules` counts the rows up to
      where a one-at-a-time run would have stopped).
    relaxed_evaluated: relaxed-model forward+backward evaluations (gradient
      searches; 0 otherwise).
    elapsed: seconds.
    complete: True when an exhaustive search covered the whole space.
    stop_reason: ``exhausted`` (the whole space), ``search_size``,
      ``victory``, ``timeout`` (Timeloop's rules), ``budget``, ``time`` or
      ``steps`` (a gradient search ran all its steps).
    method: the search that ran (``random``, ``exhaustive``, ...).
    rules: the :class:`~jaxloop.mapper.rules.StopRules` it applied.
    budget, time_limit: its limits (None: none).
    startup: seconds the command spent before the search began (reading
      the files, building the mapspace; ``jaxloop map`` counts them inside
      ``time_limit``); 0 for a search called from Python.
  """
  best_mapping: Optional[Mapping]
  best_stats: Optional[Stats]
  best_objective: Optional[tuple[float, ...]]
  topk: list
  log: list
  mapspace_size: dict
  objective: tuple[str, ...]
  evaluated: int = 0
  legal: int = 0
  relaxed_evaluated: int = 0
  elapsed: float = 0.0
  complete: bool = False
  stop_reason: str = ""
  method: str = ""
  rules: StopRules = StopRules()
  budget: Optional[int] = None
  time_limit: Optional[float] = None
  startup: float = 0.0

  def log_csv(self) -> str:
    """The log as Timeloop-style CSV (the ``progress.csv`` of ``jaxloop
    map``); an infinite best (nothing legal yet) is an empty cell."""
    cols = ("time_s", "evaluated", "legal", "best_objective",
            "best_energy_pj", "best_cycles")
    lines = [",".join(cols)]
    for row in self.log:
      lines.append(",".join(_fmt(row[c]) for c in cols))
    return "\n".join(lines) + "\n"

  def stop_text(self) -> str:
    """Why the search stopped, in words."""
    r = self.rules
    return {
        "exhausted": "every mapping of the space evaluated: the best is "
                     "the optimum",
        "search_size": f"{r.search_size:,} legal mappings found "
                       f"(search_size)",
        "victory": f"{r.victory:,} legal mappings in a row without a better "
                   f"one (victory_condition)",
        "timeout": f"{r.timeout:,} illegal mappings in a row (timeout)",
        "budget": f"budget of {self.budget or 0:,} evaluations spent",
        "time": f"time limit of {self.time_limit or 0:g} s reached",
        "steps": "the gradient search ran all its steps",
    }.get(self.stop_reason, self.stop_reason or "-")

  def summary_lines(self) -> list[str]:
    """What ``jaxloop map`` prints at the end: the search, the mapspace
    size, mappings evaluated and legal, the stop reason and the best
    mapping's energy, cycles, EDP and utilization."""
    size = self.mapspace_size
    relaxed = (f" (+{self.relaxed_evaluated:,} relaxed)"
               if self.relaxed_evaluated else "")
    lines = [
        f"search     : {self.method or '?'}, objective "
        f"{','.join(self.objective)}",
        f"mapspace   : {size.get('total', 0):,} mappings "
        f"({size.get('factorizations', 0):,} factorizations x "
        f"{size.get('permutations', 0):,} loop orders x "
        f"{size.get('bypass', 0):,} bypass choices)",
        f"evaluated  : {self.evaluated:,}{relaxed}, {self.legal:,} legal, "
        f"in {self.elapsed:.1f} s" + (
            f" (+ {self.startup:.1f} s start-up before the search)"
            if self.startup > 0 else ""),
        f"stopped    : {self.stop_reason or '-'}: {self.stop_text()}"]
    s = self.best_stats
    if s is None:
      lines.append("best       : no legal mapping found")
    else:
      energy, cycles = float(s.energy_total), float(s.cycles)
      lines.append(
          f"best       : energy {energy * 1e-6:.6g} uJ  cycles {cycles:.0f}"
          f"  EDP {float(edp(energy, cycles)):.4e} J*cycle  utilization "
          f"{100.0 * float(s.utilization):.2f}%")
    return lines


def _fmt(v) -> str:
  if isinstance(v, float):
    return repr(v) if np.isfinite(v) else ""
  return str(v)


class Pool:
  """The ``capacity`` best distinct legal genomes seen, best first.

  Distinct means distinct canonical hashes (:meth:`Mapspace.canonical_hash`
  ignores the order of loops with factor 1).  ``aux`` holds each genome's
  ``(energy_pJ, cycles)``.
  """

  def __init__(self, mapspace: Mapspace, capacity: int, num_keys: int):
    self.ms, self.capacity = mapspace, max(1, int(capacity))
    self.keys = np.zeros((0, num_keys))
    self.aux = np.zeros((0, 2))
    self.hashes = np.zeros(0, np.uint64)
    self.genomes: Optional[Genome] = None

  def __len__(self) -> int:
    return len(self.keys)

  def best_key(self) -> Optional[np.ndarray]:
    return self.keys[0] if len(self.keys) else None

  def merge(self, g: Genome, keys: np.ndarray, aux: np.ndarray,
            valid: np.ndarray):
    """Adds the legal rows of ``g`` (``keys [B, M]``, ``aux [B, 2]``)."""
    idx = np.nonzero(valid)[0]
    if not len(idx):
      return
    if len(idx) > 4 * self.capacity:
      sel = np.lexsort(keys[idx].T[::-1])[:4 * self.capacity]
      idx = idx[sel]
    new = g.take(idx)
    hashes = np.concatenate([self.hashes, self.ms.canonical_hash(new)])
    allk = np.concatenate([self.keys, keys[idx]])
    alla = np.concatenate([self.aux, aux[idx]])
    allg = new if self.genomes is None else Genome.concat([self.genomes, new])
    order = np.lexsort(allk.T[::-1])
    _, first = np.unique(hashes[order], return_index=True)
    keep = order[np.sort(first)][:self.capacity]
    self.keys, self.aux, self.hashes = allk[keep], alla[keep], hashes[keep]
    self.genomes = allg.take(keep)


class Tracker(Pool):
  """A search's bookkeeping: evaluates genome batches with the exact model,
  keeps the top ``capacity`` distinct legal genomes, counts, logs, shows a
  progress bar and applies the stopping rules.

  Args:
    workload: the :class:`jaxloop.Workload` searched.
    objective: metric name(s), see :mod:`jaxloop.mapper.objective`.
    desc: the search's name (progress-bar label, ``SearchResult.method``).
    capacity: genomes kept (at least the ``topk`` returned).
    batch: rows per compiled evaluation (shorter batches are padded).
    budget: stop after this many model evaluations (None: no limit):
      exact ones plus ``relaxed_evaluated``, the relaxed-model evaluations a
      gradient search adds.
    time_limit: stop after this many seconds (None: no limit).
    rules: Timeloop's ``search_size``, ``victory_condition`` and
      ``timeout`` (:mod:`jaxloop.mapper.rules`), applied row by row: a batch
      in which a rule fires counts only its rows up to that one.
    progress: show a tqdm bar (only on a terminal).
    params: ``ArchParams`` overriding the workload's.
    stats: the statistics computed in the loop (at least
      :data:`SEARCH_STATS`; None: all, and :meth:`finish` evaluates the
      top-k through the loop's compiled program).  ``last_stats``,
      ``last_keys``, ``last_aux`` and ``last_valid`` describe the whole
      last evaluated batch, ``last_count`` how many of its rows were
      counted.
  """

  def __init__(self, workload, objective: Objective, *, desc: str,
               capacity: int, batch: int = 4096,
               budget: Optional[int] = None,
               time_limit: Optional[float] = None,
               rules: StopRules = StopRules(), progress: bool = True,
               params=None, stats: Optional[Sequence[str]] = SEARCH_STATS):
    self.names = parse_objective(objective)
    super().__init__(workload.mapspace, capacity, len(self.names))
    self.workload, self.params, self.desc = workload, params, desc
    self._evaluate = fixed_batch_evaluator(workload, batch, stats, params)
    self._loop_has_all_stats = stats is None
    self.budget, self.time_limit, self.rules = budget, time_limit, rules
    self.start = time.perf_counter()
    self.evaluated = self.legal = 0
    self.counters = Counters()
    self._previous: Optional[tuple] = None   # the last counted genome
    self.last_stats: Optional[Stats] = None
    self.last_keys = np.zeros((0, len(self.names)))
    self.last_aux = np.zeros((0, 2))
    self.last_valid = np.zeros(0, bool)
    self.last_count = 0
    self.relaxed_evaluated = 0
    self.log: list[dict] = []
    self.stop_reason = ""
    show = progress and sys.stderr.isatty()
    self.bar = tqdm(total=budget, desc=desc, unit="map", disable=not show,
                    leave=False)

  @property
  def elapsed(self) -> float:
    return time.perf_counter() - self.start

  @property
  def ruled_out(self) -> bool:
    """Whether one of Timeloop's rules stopped the search."""
    return self.stop_reason in rules_mod.RULE_REASONS

  def remaining(self) -> Optional[int]:
    """Evaluations left in the budget, exact and relaxed (None: no budget).
    """
    if self.budget is None:
      return None
    return self.budget - self.evaluated - self.relaxed_evaluated

  def allowance(self) -> int:
    """Evaluations still counted: 0 once a rule stopped the search, else
    what is left of the budget (a large number without one)."""
    if self.ruled_out:
      return 0
    rem = self.remaining()
    return np.iinfo(np.int64).max if rem is None else max(rem, 0)

  def evaluate(self, g: Genome) -> np.ndarray:
    """Evaluates ``g``, updates the top-k, counts and log with the rows a
    sequential run would evaluate before a rule stops it (all rows unless
    one does; none once one did); returns the ``[B, M]`` keys of all
    rows."""
    mapping = self.ms.decode(g)
    stats = self._evaluate(mapping)
    keys = objective_keys(stats, self.names)
    refused = self._refused(mapping)
    valid = np.asarray(stats.valid, bool) & ~refused
    keys[refused] = np.inf
    aux = np.stack([np.asarray(stats.energy_total, np.float64),
                    np.asarray(stats.cycles, np.float64)], axis=1)
    self.last_stats, self.last_keys = stats, keys
    self.last_aux, self.last_valid = aux, valid
    n = self.last_count = self._apply_rules(g, keys, valid, refused)
    self.evaluated += n
    self.legal += int(valid[:n].sum())
    self.merge(g.take(slice(0, n)), keys[:n], aux[:n], valid[:n])
    self._log_row()
    self.bar.update(n)
    best = self.best_key()
    if best is not None:
      self.bar.set_postfix_str(f"legal={self.legal} best={best[0]:.4g}")
    return keys

  def _refused(self, mapping: Mapping) -> np.ndarray:
    """Rows with more temporal loops of factor > 1 than
    ``rules.max_temporal_loops`` (Timeloop refuses them before evaluating).
    """
    limit = self.rules.max_temporal_loops
    loops = (np.asarray(mapping.temporal) > 1).reshape(
        len(mapping.temporal), -1).sum(axis=1)
    return loops > limit if limit > 0 else np.zeros(len(loops), bool)

  def _apply_rules(self, g: Genome, keys: np.ndarray, valid: np.ndarray,
                   refused: np.ndarray) -> int:
    """Scans the batch with Timeloop's rules (sets ``stop_reason`` when one
    fires); returns how many rows count."""
    if self.ruled_out or not len(g):
      return 0
    improved = rules_mod.improvements(self.best_key(), keys, valid)
    only_bypass = rules_mod.bypass_only(self._previous, g.fidx, g.order,
                                        g.keep)
    # Timeloop compares with the previous mapping from its third one on.
    only_bypass[:max(0, 2 - self.evaluated)] = False
    n, reason, self.counters = rules_mod.scan(
        self.rules, self.counters, valid, improved, only_bypass, refused)
    if n:
      self._previous = (g.fidx[n - 1], g.order[n - 1], g.keep[n - 1])
    self.stop_reason = reason or self.stop_reason
    return n

  def _log_row(self):
    best = self.best_key()
    inf = float("inf")
    self.log.append({
        "time_s": round(self.elapsed, 4), "evaluated": self.evaluated,
        "legal": self.legal,
        "best_objective": float(best[0]) if best is not None else inf,
        "best_energy_pj": float(self.aux[0, 0]) if len(self.aux) else inf,
        "best_cycles": float(self.aux[0, 1]) if len(self.aux) else inf,
        "relaxed_evaluated": self.relaxed_evaluated})

  def should_stop(self) -> bool:
    """Applies Timeloop's rules (already checked row by row), the budget
    and the time limit (sets ``stop_reason``)."""
    if self.ruled_out:
      pass
    elif self.budget is not None and self.remaining() <= 0:
      self.stop_reason = "budget"
    elif (self.time_limit is not None and self.elapsed >= self.time_limit
          and self.log):      # at least one batch, whatever the limit
      self.stop_reason = "time"
    return bool(self.stop_reason)

  def finish(self, topk: int, complete: bool = False) -> SearchResult:
    """Evaluates the top-k again for their full Stats; closes the bar."""
    self.bar.close()
    entries = []
    if self.genomes is not None and len(self.genomes):
      g = self.genomes.take(slice(0, topk))
      maps = self.ms.decode(g)
      if self._loop_has_all_stats:
        stats = self._evaluate(maps)
      else:
        stats = jax.tree.map(np.asarray,
                             evaluator(self.workload)(maps, self.params))
      entries = [(tuple(float(x) for x in self.keys[i]), _row(maps, i),
                  _row(stats, i)) for i in range(len(g))]
    best_k, best_m, best_s = entries[0] if entries else (None, None, None)
    return SearchResult(
        best_mapping=best_m, best_stats=best_s, best_objective=best_k,
        topk=entries, log=self.log, mapspace_size=self.ms.size(),
        objective=self.names, evaluated=self.evaluated, legal=self.legal,
        relaxed_evaluated=self.relaxed_evaluated, elapsed=self.elapsed,
        complete=complete,
        stop_reason=self.stop_reason or ("exhausted" if complete else ""),
        method=self.desc, rules=self.rules, budget=self.budget,
        time_limit=self.time_limit)


def require_limit(method: str, budget: Optional[int],
                  time_limit: Optional[float],
                  rules: StopRules = StopRules()) -> None:
  """Raises ValueError unless a search that never ends by itself has a
  budget, a time limit, a ``victory`` or a ``search_size``
  (:func:`jaxloop.mapper.search` gives it a time limit otherwise)."""
  if budget is None and time_limit is None and not rules.can_stop:
    raise ValueError(f"the {method} search needs a budget, a time_limit, a "
                     "victory or a search_size (jaxloop.mapper.search sets "
                     "a default time limit)")


def _row(tree, i):
  return jax.tree.map(lambda a: np.asarray(a)[i], tree)




# ------------------------------------------------------------------ device
# Mappings per compiled call of the on-device random search when the caller
# gives no ``batch``: large enough that a call's fixed costs vanish.
DEVICE_CHUNK = 65536
# The on-device top-k keeps this many times ``topk`` entries (at least
# DEVICE_TOPK_MIN), so that ``topk`` distinct ones remain after the copies
# of one mapping (same canonical hash) are dropped on the host.
DEVICE_TOPK_FACTOR = 4
DEVICE_TOPK_MIN = 16


def device_path_applies(names: tuple[str, ...], rules: StopRules) -> bool:
  """Whether the on-device random search (:func:`device_random_search`)
  gives the same kind of result as the host loop: one metric, and none of
  Timeloop's rules that need per-row flags in order (``victory``,
  ``timeout``, ``search_size``, ``max_temporal_loops``)."""
  return (len(names) == 1 and not rules.victory and not rules.timeout
          and not rules.search_size and rules.max_temporal_loops <= 0)


_METRIC = {"energy": 0, "delay": 1, "edp": 2}


@functools.lru_cache(maxsize=32)
def _device_step(structure, metric: int, devices: tuple, mapspace: Mapspace,
                 chunk: int, lanes: int):
  """Jitted ``(state, params, key, chunk_id, rows) -> state``: draws chunk
  ``chunk_id`` on the device (:meth:`Mapspace.draw_blocks` from
  ``fold_in(key, chunk_id)``, exactly the draw of :func:`jaxloop.stream`),
  evaluates only the ranked totals and folds the rows ``< rows`` into the
  running top-k (objective, stream position, ``(energy, cycles)``,
  mapping) and the evaluated/legal counts.  Ties go to the earlier
  position."""
  from jaxloop import shard, streaming
  mesh = shard.batch_mesh(devices) if len(devices) > 1 else None

  def step(state, params, key, chunk_id, rows):
    mapping = streaming.draw_chunk(mapspace, key, chunk_id, chunk, lanes,
                                   mesh)
    stats = streaming._evaluate_chunk(structure, params, mapping, mesh)
    C = stats.valid.shape[0]
    ok = stats.valid & (jnp.arange(C) < rows)
    metrics = streaming._chunk_metrics(stats, ok)                 # [3, C]
    obj = metrics[metric]
    K = state["obj"].shape[0]
    cand = streaming._smallest(obj, min(K, C))
    pos = chunk_id.astype(jnp.int64) * chunk + cand
    all_obj = jnp.concatenate([state["obj"], obj[cand]])
    all_pos = jnp.concatenate([state["pos"], pos])
    all_aux = jnp.concatenate([state["aux"], metrics[:2, cand].T])
    all_map = jax.tree.map(lambda a, b: jnp.concatenate([a, b]),
                           state["map"], blocks_take(mapping, cand))
    _, sel = jax.lax.top_k(-all_obj, K)
    return {"obj": all_obj[sel], "pos": all_pos[sel], "aux": all_aux[sel],
            "map": jax.tree.map(lambda a: a[sel], all_map),
            "evaluated": state["evaluated"]
            + jnp.minimum(rows, C).astype(jnp.int64),
            "legal": state["legal"] + jnp.sum(ok).astype(jnp.int64)}

  if mesh is None:
    return jax.jit(step)
  rep = shard.replicated(mesh)
  return jax.jit(step, in_shardings=rep, out_shardings=rep)


def _device_state(structure, k: int) -> dict:
  """The empty running state of :func:`_device_step` (numpy)."""
  from jaxloop import streaming
  empty = streaming._empty_state(structure, k, 1)
  return {"obj": np.full(k, np.inf), "pos": np.full(k, -1, np.int64),
          "aux": np.full((k, 2), np.inf), "map": empty.topk_mapping,
          "evaluated": np.int64(0), "legal": np.int64(0)}


def device_random_search(workload, *, names: tuple[str, ...],
                         budget: Optional[int], time_limit: Optional[float],
                         seed: int, topk: int, chunk: int,
                         progress: bool, rules: StopRules = StopRules(),
                         params=None) -> SearchResult:
  """Uniform random search drawn, evaluated and reduced on the device.

  The machinery of :func:`jaxloop.stream` with ``count=``: chunk ``c`` of
  ``chunk`` mappings is drawn in the blocked layout from
  ``fold_in(PRNGKey(seed), c)`` inside the compiled call, only the
  ranked totals are computed, and a running top-k stays on the device; no
  mapping crosses to the host until the end.  At most two chunks are in
  flight; a log row is written for each chunk once its result is ready.

  Same seed, budget and chunk (no time limit): same result.  The time
  limit is checked before each chunk is dispatched (the last chunks in
  flight finish; at least one chunk runs).  The top-k is made distinct
  (:meth:`Mapspace.canonical_hash`) on the host from the
  ``DEVICE_TOPK_FACTOR * topk`` best entries, so in a tiny space drawn
  many times over fewer than ``topk`` distinct mappings may come back.
  Only for :func:`device_path_applies` (one metric, no row-by-row rules).
  """
  from jaxloop import shard, streaming
  start = time.perf_counter()
  s, ms = workload.structure, workload.mapspace
  devs = tuple(jax.local_devices())
  chunk, lanes = streaming._chunk_layout(int(chunk), len(devs))
  mesh = shard.batch_mesh(devs) if len(devs) > 1 else None
  put = streaming._put_replicated(mesh)
  k = max(DEVICE_TOPK_MIN, DEVICE_TOPK_FACTOR * int(topk))
  step = _device_step(s, _METRIC[names[0]], devs, ms, chunk, lanes)
  state = put(_device_state(s, k))
  p = workload.params if params is None else params
  p = put(jax.tree.map(jnp.asarray, p))
  key = put(jax.random.PRNGKey(int(seed)))
  total = None if budget is None else max(int(budget), 0)
  show = progress and sys.stderr.isatty()
  bar = tqdm(total=budget, desc="random", unit="map", disable=not show,
             leave=False)
  log: list[dict] = []
  seen = [0]

  def record(st):
    obj, aux = np.asarray(st["obj"])[0], np.asarray(st["aux"])[0]
    ev, legal = int(st["evaluated"]), int(st["legal"])
    log.append({"time_s": round(time.perf_counter() - start, 4),
                "evaluated": ev, "legal": legal,
                "best_objective": float(obj),
                "best_energy_pj": float(aux[0]), "best_cycles": float(aux[1]),
                "relaxed_evaluated": 0})
    bar.update(ev - seen[0])
    seen[0] = ev

  pending, c, reason = [], 0, ""
  while True:
    if total is not None and c * chunk >= total:
      reason = "budget"
      break
    if (time_limit is not None and c
        and time.perf_counter() - start >= time_limit):
      reason = "time"
      break
    rows = chunk if total is None else min(chunk, total - c * chunk)
    state = step(state, p, key, np.int64(c), np.int64(rows))
    pending.append(state)
    c += 1
    if len(pending) > 2:
      record(jax.block_until_ready(pending.pop(0)))
  for st in pending:
    record(jax.block_until_ready(st))
  bar.close()
  st = jax.tree.map(np.asarray, state)
  return _device_result(workload, st, names, topk, log, reason, budget,
                        time_limit, rules, params, start)


def _device_result(workload, st: dict, names, topk: int, log: list,
                   reason: str, budget, time_limit, rules, params,
                   start: float) -> SearchResult:
  """The :class:`SearchResult` of a final device state: the distinct best
  ``topk`` entries, evaluated again for their full Stats."""
  ms = workload.mapspace
  ok = np.nonzero(np.isfinite(st["obj"]))[0]
  entries = []
  if len(ok):
    maps = _take_rows(st["map"], ok)
    g = Genome.concat([ms.encode(_take_rows(maps, i))
                       for i in range(len(ok))])
    _, first = np.unique(ms.canonical_hash(g), return_index=True)
    keep = np.sort(first)[:topk]
    maps = _take_rows(maps, keep)
    stats = jax.tree.map(np.asarray, evaluator(workload)(maps, params))
    entries = [((float(st["obj"][ok[j]]),), _row(maps, i), _row(stats, i))
               for i, j in enumerate(keep)]
  best_k, best_m, best_s = entries[0] if entries else (None, None, None)
  return SearchResult(
      best_mapping=best_m, best_stats=best_s, best_objective=best_k,
      topk=entries, log=log, mapspace_size=ms.size(), objective=names,
      evaluated=int(st["evaluated"]), legal=int(st["legal"]),
      elapsed=time.perf_counter() - start, stop_reason=reason,
      method="random", rules=rules, budget=budget, time_limit=time_limit)


def _take_rows(tree, idx):
  return jax.tree.map(lambda a: np.asarray(a)[idx], tree)
