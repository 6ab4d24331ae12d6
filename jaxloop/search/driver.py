"""Shared machinery of the searches: fixed-size batched evaluation, the
top-k, the progress log, stopping rules and the result object."""
from __future__ import annotations

import dataclasses
import sys
import time
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np
from tqdm import tqdm

from jaxloop import shard
from jaxloop.mapspace import Genome, Mapspace
from jaxloop.model.evaluate import make_evaluator
from jaxloop.search.objective import objective_keys
from jaxloop.structure import Structure
from jaxloop.types import ArchParams, Mapping, Stats


class BatchEvaluator:
  """Evaluates Mapping batches of any length with one compiled batch size.

  Short batches are padded with their first row, so ``make_evaluator``
  compiles once per (structure, batch).  With more than one local device
  the batch axis is split over all of them (``jaxloop.shard``) and the
  batch is rounded up to a multiple of the device count.
  """

  def __init__(self, structure: Structure, params: ArchParams, batch: int):
    self.params = jax.tree.map(jnp.asarray, params)
    ndev = jax.local_device_count()
    if ndev > 1:
      self.fn = shard.make_sharded_evaluator(structure)
      self.batch = shard.round_up(batch, ndev)
    else:
      self.fn = make_evaluator(structure)
      self.batch = int(batch)

  def __call__(self, mapping: Mapping) -> Stats:
    """Numpy ``Stats`` with leading axis ``B = len(mapping.temporal)``."""
    n = int(np.shape(mapping.temporal)[0])
    parts = []
    for start in range(0, n, self.batch):
      stop = min(n, start + self.batch)
      chunk = jax.tree.map(lambda a: np.asarray(a)[start:stop], mapping)
      pad = self.batch - (stop - start)
      if pad:
        chunk = jax.tree.map(
            lambda a: np.concatenate([a, np.repeat(a[:1], pad, axis=0)]),
            chunk)
      out = jax.tree.map(np.asarray, self.fn(self.params, chunk))
      parts.append(jax.tree.map(lambda a: a[:stop - start], out))
    if len(parts) == 1:
      return parts[0]
    return jax.tree.map(lambda *a: np.concatenate(a), *parts)


@dataclasses.dataclass
class SearchResult:
  """What a search found.

  Attributes:
    best_mapping: single numpy Mapping (None if nothing legal was found).
    best_stats: its single numpy Stats.
    best_objective: its objective key (one value per metric).
    topk: ``[(key, Mapping, Stats), ...]`` best first, distinct mappings.
    log: rows ``{time_s, evaluated, legal, best_objective, best_energy_pj,
      best_cycles}``.
    mapspace_size: :meth:`Mapspace.size`.
    objective: metric names.
    evaluated, legal: counts; ``elapsed``: seconds; ``complete``: True when
      an exhaustive search covered the whole space.
    stop_reason: ``budget``, ``time``, ``victory`` or ``exhausted``.
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
  elapsed: float = 0.0
  complete: bool = False
  stop_reason: str = ""

  def log_csv(self) -> str:
    cols = ("time_s", "evaluated", "legal", "best_objective",
            "best_energy_pj", "best_cycles")
    lines = [",".join(cols)]
    for row in self.log:
      lines.append(",".join(_fmt(row[c]) for c in cols))
    return "\n".join(lines) + "\n"


def _fmt(v) -> str:
  if isinstance(v, float):
    return repr(v) if np.isfinite(v) else ""
  return str(v)


class Pool:
  """The ``capacity`` best distinct legal genomes seen (by canonical hash)."""

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
  """Keeps the top-k distinct genomes, counts, the log and stop rules."""

  def __init__(self, mapspace: Mapspace, evaluator: BatchEvaluator,
               names: tuple[str, ...], *, capacity: int,
               budget: Optional[int], time_limit: Optional[float],
               victory: Optional[int], progress: bool, desc: str):
    super().__init__(mapspace, capacity, len(names))
    self.evaluator, self.names = evaluator, names
    self.budget, self.time_limit, self.victory = budget, time_limit, victory
    self.start = time.perf_counter()
    self.evaluated = self.legal = 0
    self.since_best = 0
    self.last_valid = np.zeros(0, bool)
    self.log: list[dict] = []
    self.stop_reason = ""
    show = progress and sys.stderr.isatty()
    self.bar = tqdm(total=budget, desc=desc, unit="map", disable=not show,
                    leave=False)

  @property
  def elapsed(self) -> float:
    return time.perf_counter() - self.start

  def remaining(self) -> Optional[int]:
    return None if self.budget is None else self.budget - self.evaluated

  def evaluate(self, g: Genome) -> np.ndarray:
    """Evaluates ``g``, updates the top-k and log; returns ``[B, M]`` keys."""
    stats = self.evaluator(self.ms.decode(g))
    keys = objective_keys(stats, self.names)
    valid = np.asarray(stats.valid, bool)
    before = self.best_key()
    self.evaluated += len(g)
    self.legal += int(valid.sum())
    aux = np.stack([np.asarray(stats.energy_total, np.float64),
                    np.asarray(stats.cycles, np.float64)], axis=1)
    self.merge(g, keys, aux, valid)
    self.last_aux, self.last_valid = aux, valid
    best = self.best_key()
    if best is not None and (before is None or _less(best, before)):
      # Legal evaluations after the batch's best count as no improvement.
      hit = np.nonzero(np.all(keys == best, axis=1))[0]
      self.since_best = int(valid[hit[0] + 1:].sum()) if len(hit) else 0
    else:
      self.since_best += int(valid.sum())
    self._log_row()
    self.bar.update(len(g))
    if best is not None:
      self.bar.set_postfix_str(f"legal={self.legal} best={best[0]:.4g}")
    return keys

  def _log_row(self):
    best = self.best_key()
    self.log.append({
        "time_s": round(self.elapsed, 4), "evaluated": self.evaluated,
        "legal": self.legal,
        "best_objective": float(best[0]) if best is not None else float("inf"),
        "best_energy_pj": float(self.aux[0, 0]) if len(self.aux) else
        float("inf"),
        "best_cycles": float(self.aux[0, 1]) if len(self.aux) else
        float("inf")})

  def should_stop(self) -> bool:
    if self.budget is not None and self.evaluated >= self.budget:
      self.stop_reason = "budget"
    elif self.time_limit is not None and self.elapsed >= self.time_limit:
      self.stop_reason = "time"
    elif (self.victory and self.best_key() is not None
          and self.since_best >= self.victory):
      self.stop_reason = "victory"
    return bool(self.stop_reason)

  def finish(self, topk: int, complete: bool = False) -> SearchResult:
    """Re-evaluates the top-k for their full Stats; closes the bar."""
    self.bar.close()
    entries, best_m, best_s, best_k = [], None, None, None
    if self.genomes is not None and len(self.genomes):
      g = self.genomes.take(slice(0, topk))
      maps = self.ms.decode(g)
      stats = self.evaluator(maps)
      for i in range(len(g)):
        m = _row(maps, i)
        s = _row(stats, i)
        entries.append((tuple(float(x) for x in self.keys[i]), m, s))
      best_k, best_m, best_s = entries[0]
    return SearchResult(
        best_mapping=best_m, best_stats=best_s, best_objective=best_k,
        topk=entries, log=self.log, mapspace_size=self.ms.size(),
        objective=self.names, evaluated=self.evaluated, legal=self.legal,
        elapsed=self.elapsed, complete=complete,
        stop_reason=self.stop_reason or ("exhausted" if complete else ""))


def _row(tree, i):
  return jax.tree.map(lambda a: np.asarray(a)[i], tree)


def _less(a: np.ndarray, b: np.ndarray) -> bool:
  """Lexicographic ``a < b``."""
  for x, y in zip(a, b):
    if x != y:
      return bool(x < y)
  return False
