"""The proof search: the best mapping of the whole constrained mapspace
under the exact model, with the evidence.

Branch and bound over the mapspace in three tiers (rules in
:mod:`jaxloop.mapper.pruning`, arguments in docs/proof-search.md):

1. spatial assignments (the spatial factors of every dim), taken in the
   order of their objective lower bound; once an assignment's bound is not
   below the best mapping found, it and every later one are pruned
   (``bound``);
2. factorizations of an assignment, each with the keep/bypass choices
   whose tiles fit (``capacity``: the tiles, hence the fit, do not depend
   on loop orders; the tile sizes come from the model itself);
3. loop orders: one per class the model cannot tell apart
   (``unit_loops``, ``innermost_order``), evaluated exactly in fixed-size
   compiled batches (:func:`~jaxloop.mapper.driver.fixed_batch_evaluator`);
   where energy is in the objective, one order per outermost-level order
   of each (factorization, keep) first, which gives the pair an energy
   floor (``top_level``), then the others best first (lowest floor first)
   over a group of assignments with the same bound.

Every mapping of the space is either evaluated or counted under exactly one
rule, so the counts add up to the mapspace's size.  The result is
``certified`` only when they do; on a time limit or budget it reports the
best found, the lower bound of what is left and the gap.
"""
from __future__ import annotations

import dataclasses
from typing import Optional

import jax
import numpy as np

from jaxloop.evaluator import evaluator
from jaxloop.mapspace import Genome
from jaxloop.model.blocks import pad_rows
from jaxloop.mapper import pruning
from jaxloop.mapper.driver import SearchResult, Tracker, fixed_batch_evaluator
from jaxloop.mapper.objective import Objective, objective_keys
from jaxloop.mapper.rules import StopRules
from jaxloop.precision import exact


@dataclasses.dataclass
class ProofResult(SearchResult):
  """A :class:`SearchResult` with the proof's evidence.

  Attributes:
    certified: True when every mapping of the space was evaluated or
      pruned by a proven rule: ``best_objective`` is the optimum.
    lower_bound: no unexplored mapping has a key below this (the optimum
      itself when certified; None when nothing was left unexplored and
      nothing legal exists).
    gap: ``best / lower_bound - 1`` on the first metric where the bound
      is below the best (0 when certified).
    evidence: ``{"space", "evaluated", "pruned": {rule: count},
      "unexplored", "assignments": {...}, "factorizations": {...}}``
      counted in mappings of the full space (Python ints).
  """
  certified: bool = False
  lower_bound: Optional[tuple] = None
  gap: Optional[float] = None
  evidence: dict = dataclasses.field(default_factory=dict)

  def stop_text(self) -> str:
    if self.stop_reason == "exhausted":
      return ("every mapping of the space evaluated or pruned by a proven "
              "rule: the best is the optimum")
    return super().stop_text() + " before the proof was complete"

  def summary_lines(self) -> list[str]:
    lines = super().summary_lines()
    ev = self.evidence
    verdict = ("certified optimum" if self.certified else
               f"NOT certified: gap {self.gap:.3g} to lower bound "
               f"{_fmt_key(self.lower_bound)}")
    lines.append(f"proof      : {verdict}; space {ev['space']:.4g}, evaluated "
                 f"{ev['evaluated']}, pruned " + ", ".join(
                     f"{k} {v:.4g}" for k, v in ev["pruned"].items())
                 + f", unexplored {ev['unexplored']:.4g}")
    return lines


def _fmt_key(key) -> str:
  return "-" if key is None else ",".join(f"{x:.6g}" for x in key)


class _Counts:
  """Mappings of the full space per outcome (Python ints)."""

  def __init__(self, space: int):
    self.space = space
    self.pruned = {r: 0 for r in pruning.RULES}
    self.evaluated = 0
    self.assignments = {"total": 0, "explored": 0, "pruned_by_bound": 0}
    self.factorizations = {"explored": 0, "no_fit": 0}

  def as_dict(self, unexplored: int) -> dict:
    return {"space": self.space, "evaluated": self.evaluated,
            "pruned": dict(self.pruned), "unexplored": unexplored,
            "assignments": dict(self.assignments),
            "factorizations": dict(self.factorizations)}


# What the search computes per mapping: the ranked totals, validity and
# the tiles (one compiled program serves the search and the tile sizes).
PROOF_STATS = ("energy_total", "cycles", "valid", "utilized_capacity",
               "level_energy", "energy", "reads", "fills", "updates",
               "utilized_instances")


def _tile_words(workload, batch: int, params):
  """``fn(fidx [n, D]) -> tiles [n, L, S]``: the model's tile words of each
  factorization (``utilized_capacity`` with every level keeping
  everything; loop orders do not change it)."""
  ms = workload.mapspace
  s = ms.structure
  run = fixed_batch_evaluator(workload, batch, PROOF_STATS, params)
  order = np.broadcast_to(np.arange(s.num_dims, dtype=np.int32),
                          (s.num_levels, s.num_dims))
  keep = np.ones((s.num_levels, s.num_dataspaces), bool)

  def tiles(fidx: np.ndarray) -> np.ndarray:
    n = len(fidx)
    g = Genome(fidx, np.broadcast_to(order, (n,) + order.shape).copy(),
               np.broadcast_to(keep, (n,) + keep.shape).copy())
    return np.asarray(run(ms.decode(g)).utilized_capacity, np.float64)

  return tiles


class _Batcher:
  """Collects genomes and evaluates them in whole batches of ``batch``
  rows (the last one padded, on :meth:`flush`), one compiled program.

  A batch is dispatched before the previous one's results are read, so the
  host builds the next batch while the model runs; the tracker's top-k
  (the incumbent) lags by one batch, which only prunes less.  The budget
  counts dispatched rows.
  """

  def __init__(self, tr: Tracker, workload, batch: int, params,
               counts: _Counts):
    self.tr, self.batch, self.counts = tr, batch, counts
    self.ms, self.params = workload.mapspace, params
    self.ev = evaluator(workload, stats=PROOF_STATS)
    self.parts: list[Genome] = []
    self.held = 0
    self.pending = None   # (genome, device Stats) dispatched, not yet read
    self.position = 0     # the assignment being explored (index into todo)
    self.first = 0        # no later than the earliest assignment held

  def add(self, g: Genome) -> bool:
    """Queues ``g``; evaluates whole batches.  False when the search must
    stop (time or budget); rows not evaluated stay held."""
    if not self.held:
      self.first = self.position
    self.parts.append(g)
    self.held += len(g)
    while self.held >= self.batch:
      if self.must_stop() or not self._dispatch(self.batch):
        return False
    return not self.must_stop()

  def flush(self) -> None:
    """Evaluates everything held (as the budget allows) and reads it."""
    while self.held and self._dispatch(min(self.held, self.batch)):
      pass
    self.collect()

  def must_stop(self) -> bool:
    if self.tr.time_limit is not None and self.tr.log and (
        self.tr.elapsed >= self.tr.time_limit):
      self.tr.stop_reason = "time"
    if self.tr.budget is not None and self.counts.evaluated >= self.tr.budget:
      self.tr.stop_reason = "budget"
    return bool(self.tr.stop_reason)

  def _dispatch(self, n: int) -> bool:
    if self.tr.budget is not None:
      n = min(n, self.tr.budget - self.counts.evaluated)
    if n <= 0:
      return False
    g = Genome.concat(self.parts) if len(self.parts) > 1 else self.parts[0]
    head, rest = g.take(slice(0, n)), g.take(slice(n, None))
    self.parts, self.held = ([rest] if len(rest) else []), len(rest)
    stats = self.ev(pad_rows(self.ms.decode(head), self.batch), self.params)
    self.counts.evaluated += n
    self.collect()
    self.pending = (head, stats)
    return True

  def collect(self):
    """Reads the dispatched batch into the tracker (top-k, counts, log);
    returns its numpy Stats (None if none was pending)."""
    if self.pending is None:
      return None
    g, stats = self.pending
    self.pending = None
    n, tr = len(g), self.tr
    stats = jax.tree.map(lambda a: np.asarray(a)[:n], stats)
    keys = objective_keys(stats, tr.names)
    valid = np.asarray(stats.valid, bool)
    aux = np.stack([np.asarray(stats.energy_total, np.float64),
                    np.asarray(stats.cycles, np.float64)], axis=1)
    tr.evaluated += n
    tr.legal += int(valid.sum())
    tr.merge(g, keys, aux, valid)
    tr._log_row()
    tr.bar.update(n)
    return stats

  def evaluate_now(self, g: Genome):
    """Evaluates ``g`` at once (into the tracker as well); its numpy Stats,
    or None when the search must stop first (rows evaluated by then are
    counted)."""
    parts = []
    for start in range(0, len(g), self.batch):
      if self.must_stop():
        return None
      head = g.take(slice(start, start + self.batch))
      if self.tr.budget is not None and (
          self.counts.evaluated + len(head) > self.tr.budget):
        return None
      stats = self.ev(pad_rows(self.ms.decode(head), self.batch),
                      self.params)
      self.counts.evaluated += len(head)
      self.collect()
      self.pending = (head, stats)
      parts.append(self.collect())
    return jax.tree.map(lambda *a: np.concatenate(a), *parts)


@exact
def proof_search(workload, *, objective: Objective = "edp",
                 budget: Optional[int] = None,
                 time_limit: Optional[float] = None, seed: int = 0,
                 topk: int = 10, progress: bool = True, batch: int = 4096,
                 rules: StopRules = StopRules(), params=None,
                 chunk: int = 4096) -> ProofResult:
  """The best mapping of the whole mapspace, certified (see the module
  docstring).

  ``seed`` is unused (the search is deterministic).  ``rules``
  (Timeloop's victory, timeout, search_size) are not applied: they would
  end the search before it proves anything.  ``budget``/``time_limit`` end
  it early, uncertified, with the gap.  ``chunk``: factorizations whose
  tiles are computed per model call.
  """
  del seed, rules
  ms = workload.mapspace
  p = workload.params if params is None else params
  tr = Tracker(workload, objective, desc="proof", capacity=topk, batch=batch,
               budget=budget, time_limit=time_limit, progress=progress,
               params=params, stats=PROOF_STATS)
  size = ms.size()
  counts = _Counts(size["total"])
  per_fact = size["permutations"] * size["bypass"]
  tiles_of = _tile_words(workload, batch, params)
  floor = pruning.energy_floor(ms, p)
  assigns = pruning.spatial_assignments(ms)
  counts.assignments["total"] = len(assigns)
  cycles = np.asarray([a.compute_cycles for a in assigns], np.float64)
  lbs = pruning.bound_keys(tr.names, cycles, floor.energy(cycles))
  todo = list(np.lexsort(lbs.T[::-1])) if len(assigns) else []
  keeps = pruning.keep_choices(ms)
  merge0 = pruning.innermost_order_free(ms)
  top = (pruning.TopLevel(ms, floor, p)
         if pruning.TopLevel.applies(ms, tr.names, floor) else None)
  cache: dict = {}
  out = _Batcher(tr, workload, batch, params, counts)
  stop = None                  # position in todo of an unfinished assignment
  for pos, group in _groups(todo, lbs):
    i = todo[pos]
    if pruning.not_better(lbs[i], tr.best_key()):
      out.flush()              # the incumbent may improve
      if not out.held and pruning.not_better(lbs[i], tr.best_key()):
        for j in todo[pos:]:
          counts.pruned["bound"] += assigns[j].factorizations * per_fact
        counts.assignments["pruned_by_bound"] += len(todo) - pos
        break
    out.position = pos
    args = (ms, tiles_of, p, keeps, merge0, cache, out, counts, chunk,
            size["bypass"])
    if top is None:
      done = all(not out.must_stop() and _explore(assigns[j], *args)
                 for j in group)
    else:
      done = not out.must_stop() and _best_first(
          [assigns[j] for j in group], *args, top)
    if not done:
      stop = pos
      break
    counts.assignments["explored"] += len(group)
  else:
    out.flush()
  out.collect()
  unexplored = size["total"] - counts.evaluated - sum(counts.pruned.values())
  lower = None
  if unexplored:
    # the earliest assignment with rows left; later ones bound no lower
    left = [x for x in (stop, out.first if out.held else None)
            if x is not None]
    lower = tuple(float(x) for x in lbs[todo[min(left, default=0)]])
    if pruning.not_better(np.asarray(lower), tr.best_key()):
      # what is left cannot beat the best after all (the incumbent
      # improved after the last bound test)
      counts.pruned["bound"] += unexplored
      unexplored, lower = 0, None
  res = tr.finish(topk, complete=unexplored == 0)
  return _result(res, unexplored, lower, counts)


def _groups(todo: list, lbs: np.ndarray):
  """``(position, [assignment])`` runs of consecutive assignments in
  ``todo`` with the same bound."""
  pos = 0
  while pos < len(todo):
    end = pos + 1
    while end < len(todo) and np.array_equal(lbs[todo[end]], lbs[todo[pos]]):
      end += 1
    yield pos, todo[pos:end]
    pos = end


def _plans(ms, fidx, tiles_of, params, keeps, merge0, cache,
           counts: _Counts, bypass: int) -> list:
  """``[(fidx [D], orders [O, L, D], keep indices [K'])]``: each
  factorization of a chunk with its representative orders and the keep
  choices whose tiles fit (``capacity``, ``unit_loops`` and
  ``innermost_order`` counted)."""
  fits = pruning.capacity_fits(ms, params, tiles_of(fidx), keeps)
  temporal = pruning.temporal_factors(ms, fidx)
  plans = []
  for f in range(len(fidx)):
    orders, active, total = pruning.level_orders(ms, temporal[f], merge0,
                                                 cache)
    k = int(fits[f].sum())
    counts.pruned["capacity"] += (bypass - k) * total
    if not k:
      counts.factorizations["no_fit"] += 1
      continue
    counts.factorizations["explored"] += 1
    counts.pruned["unit_loops"] += k * (total - active)
    counts.pruned["innermost_order"] += k * (active - len(orders))
    plans.append((fidx[f], orders, np.flatnonzero(fits[f])))
  return plans


def _explore(a, ms, tiles_of, params, keeps, merge0, cache, out: _Batcher,
             counts: _Counts, chunk: int, bypass: int) -> bool:
  """Enumerates one assignment's factorizations, fitting keeps and
  representative orders into ``out``; False when the search must stop
  (time or budget), leaving the rest of the assignment unexplored."""
  for fidx in pruning.factorizations(ms, a, chunk):
    for f, orders, kept in _plans(ms, fidx, tiles_of, params, keeps,
                                  merge0, cache, counts, bypass):
      if not out.add(pruning.genomes(f, orders, keeps[kept])):
        return False
  return True


def _best_first(group, ms, tiles_of, params, keeps, merge0, cache,
                out: _Batcher, counts: _Counts, chunk: int, bypass: int,
                top: pruning.TopLevel) -> bool:
  """The ``top_level`` rule on a group of assignments with the same bound,
  best first: one mapping per outermost-level order of every
  (factorization, keep) is evaluated, which gives each pair its energy
  floor; then the pairs' other orders are evaluated in increasing order of
  the floor, and pairs whose floor is not below the best are skipped.
  False when the search must stop (time or budget)."""
  items = []       # (floor keys [K', M], fidx, keep indices, other orders)
  for a in group:
    for fidx in pruning.factorizations(ms, a, chunk):
      plans = _plans(ms, fidx, tiles_of, params, keeps, merge0, cache,
                     counts, bypass)
      got = _top_level(plans, top, keeps, a.compute_cycles, out)
      if got is None:
        return False
      items.extend(got)
  key = lambda item: tuple(min(tuple(k) for k in item[0]))
  items.sort(key=key)
  for n, (keys, f, kept, rest) in enumerate(items):
    best = out.tr.best_key()
    if pruning.not_better(np.asarray(key((keys,))), best):
      counts.pruned["top_level"] += sum(len(it[2]) * it[3]
                                        for it in items[n:])
      return True
    go = np.asarray([not pruning.not_better(k, best) for k in keys])
    counts.pruned["top_level"] += int((~go).sum()) * rest
    if not go.any() or not rest:
      continue
    orders, _, _ = pruning.level_orders(
        ms, pruning.temporal_factors(ms, f[None])[0], merge0, cache)
    others = np.setdiff1d(np.arange(len(orders)),
                          pruning.top_order_representatives(orders, top.top))
    if not out.add(pruning.genomes(f, orders[others], keeps[kept[go]])):
      return False
  return True


def _top_level(plans, top: pruning.TopLevel, keeps: np.ndarray,
               compute_cycles: int, out: _Batcher):
  """Evaluates one order per outermost-level order and keep choice of a
  chunk's plans ``[(fidx, orders, keep indices)]``; returns ``[(floor keys
  [K', M], fidx, keep indices, other orders per keep)]`` (None: the search
  must stop)."""
  reps = [pruning.top_order_representatives(o, top.top) for _, o, _ in plans]
  g = [pruning.genomes(f, o[r], keeps[k])
       for (f, o, k), r in zip(plans, reps)]
  if not g:
    return []
  stats = out.evaluate_now(Genome.concat(g))
  if stats is None:
    return None
  fields = {k: np.asarray(getattr(stats, k), np.float64)
            for k in pruning.TopLevel.STATS}                     # [N, L, S]
  items, row = [], 0
  for (f, orders, kept), r in zip(plans, reps):
    n = len(r) * len(kept)
    rows = {k: v[row:row + n].reshape((len(r), len(kept)) + v.shape[1:])
            for k, v in fields.items()}
    row += n
    floor = top.energy(rows, keeps[kept], compute_cycles)          # [K']
    keys = pruning.bound_keys(out.tr.names, np.full(len(kept),
                                                    compute_cycles), floor)
    items.append((keys, f, kept, len(orders) - len(r)))
  return items


def _gap(best, lower) -> float:
  """``best / lower - 1`` on the first metric where the bound is below the
  best (0 when it is below on none)."""
  for b, l in zip(best, lower):
    if l < b:
      return float(b) / float(l) - 1.0 if l > 0 else float("inf")
  return 0.0


def _result(res: SearchResult, unexplored: int, lower, counts: _Counts
            ) -> ProofResult:
  """The tracker's result with the evidence, the bound and the gap."""
  certified = unexplored == 0
  best = res.best_objective
  if certified:
    lower, gap = best, 0.0
  elif best is None or lower is None:
    gap = float("inf")
  else:
    gap = _gap(best, lower)
  fields = {f.name: getattr(res, f.name)
            for f in dataclasses.fields(SearchResult)}
  fields["stop_reason"] = ("exhausted" if certified
                           else res.stop_reason or "time")
  return ProofResult(**fields, certified=certified, lower_bound=lower,
                     gap=gap, evidence=counts.as_dict(unexplored))
