"""Batched mapspace searches: random, exhaustive, evolutionary."""
from __future__ import annotations

from typing import Optional

import numpy as np

from jaxloop.mapspace import Genome, Mapspace
from jaxloop.search import evolve
from jaxloop.search.driver import BatchEvaluator, Pool, SearchResult, Tracker
from jaxloop.search.objective import Objective, parse_objective
from jaxloop.spec import types as st
from jaxloop.structure import build_params, build_structure

DEFAULT_BUDGET = 100_000


def _setup(spec: st.Spec, objective, batch, params, mapspace):
  structure = build_structure(spec)
  if params is None:
    params = build_params(spec, structure)
  if mapspace is None:
    mapspace = Mapspace.from_spec(spec, structure)
  return (mapspace, BatchEvaluator(structure, params, batch),
          parse_objective(objective))


def random_search(spec: st.Spec, *, budget: Optional[int] = None,
                  time_limit: Optional[float] = None, seed: int = 0,
                  objective: Objective = "edp", batch: int = 4096,
                  victory: Optional[int] = None, topk: int = 10,
                  progress: bool = True, params=None,
                  mapspace: Optional[Mapspace] = None) -> SearchResult:
  """Uniform random sampling of the constrained mapspace.

  Args:
    spec: architecture, problem and constraints.
    budget: mappings to evaluate (default 100000 when no time limit).
    time_limit: seconds.
    seed: seeds the ``np.random.Generator``; same seed, same result (with
      ``budget``; a time limit makes the amount of work timing-dependent).
    objective: ``energy``, ``delay``, ``edp`` or a lexicographic list.
    batch: evaluation batch (fixed; the last batch is padded).
    victory: stop after this many legal mappings without improvement.
    topk: distinct best mappings to return.
    progress: tqdm bar (only on a tty).
    params: ``ArchParams`` overriding the spec's.
    mapspace: a prebuilt mapspace of ``spec``.

  Returns:
    SearchResult.
  """
  ms, ev, names = _setup(spec, objective, batch, params, mapspace)
  if budget is None and time_limit is None:
    budget = DEFAULT_BUDGET
  rng = np.random.default_rng(seed)
  tr = Tracker(ms, ev, names, capacity=topk, budget=budget,
               time_limit=time_limit, victory=victory, progress=progress,
               desc="random")
  while not tr.should_stop():
    rem = tr.remaining()
    n = batch if rem is None else min(batch, rem)
    tr.evaluate(ms.sample_genome(rng, n))
  return tr.finish(topk)


def exhaustive_search(spec: st.Spec, *, budget: Optional[int] = None,
                      time_limit: Optional[float] = None, seed: int = 0,
                      objective: Objective = "edp", batch: int = 4096,
                      victory: Optional[int] = None, topk: int = 10,
                      progress: bool = True, params=None,
                      mapspace: Optional[Mapspace] = None) -> SearchResult:
  """Every mapping of the space (orders differing only in unit loops merged).

  Same arguments as :func:`random_search` (``seed`` is unused).  Stops early
  on ``budget``/``time_limit``/``victory``; ``result.complete`` tells
  whether the whole space was covered.
  """
  del seed
  ms, ev, names = _setup(spec, objective, batch, params, mapspace)
  tr = Tracker(ms, ev, names, capacity=topk, budget=budget,
               time_limit=time_limit, victory=victory, progress=progress,
               desc="exhaustive")
  complete = True
  for g in ms.enumerate_genomes(batch):
    rem = tr.remaining()
    if rem is not None and rem < len(g):
      g = g.take(slice(0, rem))
    tr.evaluate(g)
    if tr.should_stop():
      complete = False
      break
  if complete:
    tr.stop_reason = "exhausted"
  return tr.finish(topk, complete=complete)


def evolve_search(spec: st.Spec, *, budget: Optional[int] = None,
                  time_limit: Optional[float] = None, seed: int = 0,
                  objective: Objective = "edp", batch: int = 4096,
                  victory: Optional[int] = None, topk: int = 10,
                  progress: bool = True, params=None,
                  mapspace: Optional[Mapspace] = None, population: int = 64,
                  random_fraction: float = 0.1,
                  patience: int = 30,
                  seeds: Optional[Genome] = None) -> SearchResult:
  """Evolutionary local search around the best mappings found so far.

  Starts from a random batch; each generation mutates rank-biased parents
  from the ``population`` best distinct legal mappings (prime re-splits,
  loop swaps, bypass flips; see :mod:`jaxloop.search.evolve`), skips
  children already evaluated, and fills ``random_fraction`` of the batch
  (and any shortfall) with uniform samples.

  The population is local: after ``patience`` generations without
  improving it, it restarts from a fresh random batch (the global top-k is
  kept), so the search visits several basins.

  Same arguments as :func:`random_search`, plus ``population``,
  ``random_fraction``, ``patience`` and ``seeds`` (genomes of ``mapspace``
  evaluated first and put in the initial population, e.g. the rounded
  results of :func:`jaxloop.search.gradient.gradient_search`).
  """
  ms, ev, names = _setup(spec, objective, batch, params, mapspace)
  if budget is None and time_limit is None:
    budget = DEFAULT_BUDGET
  rng = np.random.default_rng(seed)
  tr = Tracker(ms, ev, names, capacity=max(topk, population), budget=budget,
               time_limit=time_limit, victory=victory, progress=progress,
               desc="evolve")
  seen: set[int] = set()
  pool, stale = Pool(ms, population, len(names)), 0
  if seeds is not None and len(seeds):
    rem = tr.remaining()
    if rem is not None:
      seeds = seeds.take(slice(0, max(rem, 0)))
    if len(seeds):
      keys = tr.evaluate(seeds)
      pool.merge(seeds, keys, tr.last_aux, tr.last_valid)
      seen.update(int(h) for h in ms.canonical_hash(seeds))
  while not tr.should_stop():
    rem = tr.remaining()
    n = batch if rem is None else min(batch, rem)
    if not len(pool):
      g = ms.sample_genome(rng, n)
    else:
      n_child = int(round(n * (1.0 - random_fraction)))
      kids = evolve.offspring(ms, rng, pool.genomes, n_child)
      h = ms.canonical_hash(kids)
      _, first = np.unique(h, return_index=True)
      first = np.sort(first)
      fresh = [i for i in first if int(h[i]) not in seen]
      seen.update(int(h[i]) for i in fresh)
      kids = kids.take(np.asarray(fresh, np.int64))
      g = Genome.concat([kids, ms.sample_genome(rng, n - len(kids))])
    keys = tr.evaluate(g)
    before = pool.best_key()
    pool.merge(g, keys, tr.last_aux, tr.last_valid)
    after = pool.best_key()
    improved = after is not None and (
        before is None or tuple(after) < tuple(before))
    stale = 0 if improved else stale + 1
    if stale >= patience:
      pool, stale = Pool(ms, population, len(names)), 0
  result = tr.finish(topk)
  return result
