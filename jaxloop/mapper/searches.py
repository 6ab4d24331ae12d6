"""Batched discrete searches of a workload's mapspace: random sampling,
exhaustive enumeration, evolutionary local search.

Each takes a :class:`jaxloop.Workload` and the common keyword arguments

* ``objective``: metric name(s) (:mod:`jaxloop.mapper.objective`);
* ``budget``: exact evaluations; ``time_limit``: seconds; ``rules``:
  Timeloop's ``search_size``, ``victory_condition`` and ``timeout``
  (:class:`~jaxloop.mapper.rules.StopRules`);
* ``seed``: seeds a ``np.random.Generator``: with a budget (no time limit)
  the same seed gives the same result;
* ``topk``: distinct best mappings returned; ``batch``: mappings per
  compiled evaluation; ``progress``: a tqdm bar on a terminal;
* ``params``: ``ArchParams`` overriding the workload's;

and returns a :class:`~jaxloop.mapper.driver.SearchResult`.  Use them
through :func:`jaxloop.mapper.search`, which picks the method and the
default limits.
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from jaxloop.mapspace import Genome, Mapspace
from jaxloop.precision import exact
from jaxloop.mapper import evolve
from jaxloop.mapper.driver import (DEVICE_CHUNK, SEARCH_STATS, Pool,
                                   SearchResult, Tracker,
                                   device_path_applies,
                                   device_random_search, require_limit)
from jaxloop.mapper.device_evolve import (DEVICE_EVOLVE_BATCH,
                                           device_evolve_search)
from jaxloop.mapper.objective import Objective, parse_objective
from jaxloop.mapper.rules import StopRules


@exact
def random_search(workload, *, objective: Objective = "edp",
                  budget: Optional[int] = None,
                  time_limit: Optional[float] = None, seed: int = 0,
                  topk: int = 10, progress: bool = True,
                  batch: Optional[int] = None,
                  rules: StopRules = StopRules(),
                  params=None, device: Optional[bool] = None) -> SearchResult:
  """Uniform random sampling of the constrained mapspace (Timeloop's
  ``random`` and ``random_pruned`` searches).  Needs a budget, a time limit,
  a victory or a search size.

  Two loops give this search:

  * on the device (:func:`~jaxloop.mapper.driver.device_random_search`,
    the default where it applies: one metric, no ``victory``,
    ``timeout``, ``search_size`` or ``max_temporal_loops`` rule): each
    chunk of ``batch`` mappings (default
    :data:`~jaxloop.mapper.driver.DEVICE_CHUNK`) is drawn, evaluated and
    folded into a running top-k inside one compiled call, at the engine's
    speed;
  * on the host: genome batches (default 4096) through the batch
    evaluator, the rules applied row by row (a lexicographic objective or
    any of those rules, or ``device=False``).

  The two draw different samples: the same seed gives the same result
  within one loop.  ``device=True`` raises ValueError where the device loop
  does not apply.
  """
  require_limit("random", budget, time_limit, rules)
  names = parse_objective(objective)
  applies = device_path_applies(names, rules)
  if device and not applies:
    raise ValueError("the on-device random search ranks by one metric and "
                     "applies no victory, timeout, search_size or "
                     "max_temporal_loops rule")
  if applies and device is not False:
    return device_random_search(
        workload, names=names, budget=budget, time_limit=time_limit,
        seed=seed, topk=topk, chunk=batch or DEVICE_CHUNK,
        progress=progress, rules=rules, params=params)
  batch = batch or 4096
  rng = np.random.default_rng(seed)
  tr = Tracker(workload, objective, desc="random", capacity=topk,
               batch=batch, budget=budget, time_limit=time_limit,
               rules=rules, progress=progress, params=params)
  while not tr.should_stop():
    tr.evaluate(workload.mapspace.sample_genome(rng, _next_size(tr, batch)))
  return tr.finish(topk)


@exact
def exhaustive_search(workload, *, objective: Objective = "edp",
                      budget: Optional[int] = None,
                      time_limit: Optional[float] = None, seed: int = 0,
                      topk: int = 10, progress: bool = True,
                      batch: int = 4096, rules: StopRules = StopRules(),
                      params=None) -> SearchResult:
  """Every mapping of the space (Timeloop's ``exhaustive`` search; loop
  orders that differ only in loops of factor 1 are enumerated once).

  Mappings are taken in Timeloop's linear order: factorizations outermost,
  then loop orders, bypass choices innermost.  ``seed`` is unused.  Stops
  early on ``budget``/``time_limit``/``rules``; ``result.complete`` tells
  whether the whole space was covered (then ``stop_reason`` is
  ``exhausted`` unless a rule fired on the very last mapping).
  """
  del seed
  tr = Tracker(workload, objective, desc="exhaustive", capacity=topk,
               batch=batch, budget=budget, time_limit=time_limit,
               rules=rules, progress=progress, params=params)
  chunks = workload.mapspace.enumerate_genomes(batch)
  g, whole = next(chunks, None), True
  while g is not None and not tr.should_stop():
    rem = tr.remaining()
    whole = rem is None or rem >= len(g)
    tr.evaluate(g if whole else g.take(slice(0, rem)))
    whole = whole and tr.last_count == len(g)
    g = next(chunks, None)
  complete = g is None and whole
  if complete and not tr.ruled_out:
    tr.stop_reason = "exhausted"
  return tr.finish(topk, complete=complete)


@exact
def evolve_search(workload, *, objective: Objective = "edp",
                  budget: Optional[int] = None,
                  time_limit: Optional[float] = None, seed: int = 0,
                  topk: int = 10, progress: bool = True,
                  batch: Optional[int] = None,
                  rules: StopRules = StopRules(), params=None,
                  population: int = 64, random_fraction: float = 0.1,
                  patience: int = 30,
                  seeds: Optional[Genome] = None,
                  stats: Optional[Sequence[str]] = SEARCH_STATS,
                  device: Optional[bool] = None) -> SearchResult:
  """Evolutionary local search around the best mappings found so far.

  Starts from a random batch; each generation mutates rank-biased parents
  from the ``population`` best distinct legal mappings (prime re-splits,
  loop swaps, bypass flips; see :mod:`jaxloop.mapper.evolve`), skips
  children already evaluated, and fills ``random_fraction`` of the batch
  (and any shortfall) with uniform samples.

  The population is local: after ``patience`` generations without
  improving it, it restarts from a fresh random batch (the global top-k is
  kept), so the search visits several basins.

  Needs a budget, a time limit, a victory or a search size.  ``seeds``:
  genomes of the workload's
  mapspace evaluated first and put in the initial population (e.g. the
  rounded results of a gradient search).  ``stats``: the statistics each
  batch computes (None: all; the best mappings' full statistics then come
  from the same compiled program, one model program per workload).

  Two loops give this search, with the same moves and population rules:

  * on the device (:func:`~jaxloop.mapper.device_evolve.
    device_evolve_search`, the default where it applies: one metric, no
    ``victory``, ``timeout``, ``search_size`` or ``max_temporal_loops``
    rule, no ``seeds``, the default ``stats``): many generations of
    ``batch`` mappings (default
    :data:`~jaxloop.mapper.device_evolve.DEVICE_EVOLVE_BATCH`) per
    compiled call, bred, evaluated and ranked on the device;
  * on the host: numpy genomes in generations of ``batch`` (default
    4096) through the batch evaluator, the rules applied row by row
    (otherwise, or ``device=False``).

  The two draw different samples: the same seed gives the same result
  within one loop.  ``device=True`` raises ValueError where the device
  loop does not apply.
  """
  require_limit("evolve", budget, time_limit, rules)
  names = parse_objective(objective)
  applies = (device_path_applies(names, rules) and seeds is None
             and stats is not None and tuple(stats) == SEARCH_STATS)
  if device and not applies:
    raise ValueError("the on-device evolutionary search ranks by one metric, "
                     "takes no seeds or stats and applies no victory, "
                     "timeout, search_size or max_temporal_loops rule")
  if applies and device is not False:
    return device_evolve_search(
        workload, names=names, budget=budget, time_limit=time_limit,
        seed=seed, topk=topk, batch=batch or DEVICE_EVOLVE_BATCH,
        progress=progress, rules=rules, params=params,
        population=population, random_fraction=random_fraction,
        patience=patience)
  batch = batch or 4096
  ms = workload.mapspace
  rng = np.random.default_rng(seed)
  tr = Tracker(workload, objective, desc="evolve",
               capacity=max(topk, population), batch=batch, budget=budget,
               time_limit=time_limit, rules=rules, progress=progress,
               params=params, stats=stats)
  pop = _Population(ms, population, len(tr.names), patience)
  if seeds is not None:
    _evaluate_seeds(tr, pop, seeds)
  while not tr.should_stop():
    n = _next_size(tr, batch)
    if len(pop.pool):
      g = pop.children(rng, n, random_fraction)
    else:
      g = ms.sample_genome(rng, n)
    tr.evaluate(g)
    pop.update(g, tr)
  return tr.finish(topk)


def _next_size(tr: Tracker, batch: int) -> int:
  """The next batch's size: ``batch``, or what is left of the budget."""
  rem = tr.remaining()
  return batch if rem is None else min(batch, rem)


class _Population:
  """Evolve's local population: the best distinct legal genomes since the
  last restart, the canonical hashes of every genome bred so far, and the
  count of generations without improvement."""

  def __init__(self, ms: Mapspace, size: int, num_keys: int, patience: int):
    self.ms, self.size, self.num_keys = ms, size, num_keys
    self.patience, self.stale = patience, 0
    self.pool = Pool(ms, size, num_keys)
    self.seen: set[int] = set()

  def remember(self, g: Genome) -> None:
    self.seen.update(int(h) for h in self.ms.canonical_hash(g))

  def children(self, rng: np.random.Generator, n: int,
               random_fraction: float) -> Genome:
    """``n`` genomes: children of the population not bred before (each
    once), topped up with uniform samples."""
    kids = evolve.offspring(self.ms, rng, self.pool.genomes,
                            int(round(n * (1.0 - random_fraction))))
    h = self.ms.canonical_hash(kids)
    _, first = np.unique(h, return_index=True)
    fresh = [i for i in np.sort(first) if int(h[i]) not in self.seen]
    self.seen.update(int(h[i]) for i in fresh)
    kids = kids.take(np.asarray(fresh, np.int64))
    return Genome.concat([kids, self.ms.sample_genome(rng, n - len(kids))])

  def update(self, g: Genome, tr: Tracker) -> None:
    """Merges the batch ``tr`` just evaluated; restarts the population after
    ``patience`` generations without improving its best."""
    before = self.pool.best_key()
    self.pool.merge(g, tr.last_keys, tr.last_aux, tr.last_valid)
    after = self.pool.best_key()
    improved = after is not None and (
        before is None or tuple(after) < tuple(before))
    self.stale = 0 if improved else self.stale + 1
    if self.stale >= self.patience:
      self.pool, self.stale = Pool(self.ms, self.size, self.num_keys), 0


def _evaluate_seeds(tr: Tracker, pop: _Population, seeds: Genome) -> None:
  """Evaluates the seed genomes (as many as the budget allows) into the
  top-k and the initial population."""
  rem = tr.remaining()
  if rem is not None:
    seeds = seeds.take(slice(0, max(rem, 0)))
  if len(seeds):
    tr.evaluate(seeds)
    pop.pool.merge(seeds, tr.last_keys, tr.last_aux, tr.last_valid)
    pop.remember(seeds)
