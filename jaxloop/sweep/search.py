"""Mapping search for many architectures of one structure at once.

For one layer and a group of points sharing a :class:`Structure` (and
constraints, hence the mapspace), every point gets its own evolutionary
search, run side by side, ``N = children`` mappings per point and call:

1. a shared uniform sample of the mapspace, evaluated on every point
   (the same rows given to each point);
2. generations: each point breeds children from its own elites
   (:func:`jaxloop.mapper.evolve.offspring`, a random generator per point
   seeded by ``(seed, layer, point id)``), all points' children evaluated
   together.

Every call is the one program ``params [P] x mappings [P, N]``
(:func:`jaxloop.sweep.batched.points_program`).  A point's result depends
on the seed, the layer and its id only, not on which points share its
calls: a sweep split over processes gives the table of one process.
"""
from __future__ import annotations

import dataclasses
import types
from typing import Sequence

import jax
import numpy as np

from jaxloop.mapper.evolve import offspring
from jaxloop.mapper.objective import objective_keys
from jaxloop.mapspace import Genome, Mapspace
from jaxloop.precision import exact
from jaxloop.sweep import batched
from jaxloop.types import ArchParams, Mapping, Stats

ELITES = 16


@dataclasses.dataclass(frozen=True)
class SearchSettings:
  """Per point and layer: ``budget`` model evaluations, half a shared
  uniform sample, half generations of ``children``; ``objective`` parsed
  (:func:`jaxloop.mapper.objective.parse_objective`); ``points_per_call``
  points evaluated together (padded)."""
  budget: int = 4096
  children: int = 256
  points_per_call: int = 8
  objective: tuple = ("edp",)
  seed: int = 0

  @property
  def sample_calls(self) -> int:
    return max(1, self.budget // 2 // self.children)

  @property
  def generations(self) -> int:
    return max(0, self.budget // self.children - self.sample_calls)


def _keys(stats, objective) -> np.ndarray:
  """``[P, N, M]`` objective keys (inf when invalid)."""
  valid = np.asarray(stats.valid)
  flat = types.SimpleNamespace(
      energy_total=np.asarray(stats.energy_total).reshape(-1),
      cycles=np.asarray(stats.cycles).reshape(-1), valid=valid.reshape(-1))
  return objective_keys(flat, objective).reshape(valid.shape + (-1,))


class _Elites:
  """Each point's best genomes so far (``ELITES``, best first), their keys
  and their statistics (the :data:`batched.ROW_STATS` fields)."""

  def __init__(self, count: int):
    self.genomes = [None] * count
    self.keys = [None] * count
    self.stats = [None] * count

  def offer(self, i: int, g: Genome, keys: np.ndarray, stats: dict) -> None:
    if self.genomes[i] is not None:
      g = Genome.concat([self.genomes[i], g])
      keys = np.concatenate([self.keys[i], keys])
      stats = {k: np.concatenate([self.stats[i][k], v])
               for k, v in stats.items()}
    top = np.lexsort(keys.T[::-1])[:ELITES]
    self.genomes[i], self.keys[i] = g.take(top), keys[top]
    self.stats[i] = {k: v[top] for k, v in stats.items()}


def _chunks(n: int, size: int):
  for start in range(0, n, size):
    yield start, min(n, start + size)


def _evaluate(fn, ms: Mapspace, params, genomes: list, q: int):
  """Stats ``[len(genomes), N]`` (numpy dict) of each point's genomes; the
  call padded to ``q`` points."""
  n = len(genomes)
  genomes = genomes + [genomes[-1]] * (q - n)
  per = len(genomes[0])
  m = jax.tree.map(lambda x: x.reshape((q, per) + x.shape[1:]),
                   ms.decode(Genome.concat(genomes)))
  out = fn(batched.stack_params(params, q), m)
  return {k: np.asarray(getattr(out, k))[:n] for k in batched.ROW_STATS}


@exact
def search_points(ms: Mapspace, params: Sequence[ArchParams],
                  point_ids: Sequence[int], layer_id: int,
                  settings: SearchSettings, devices: tuple
                  ) -> tuple[Mapping, Stats]:
  """Best mapping of each point and its statistics.

  Args:
    ms: the group's mapspace (for this layer).
    params: ``[P]`` the points' ArchParams (numpy).
    point_ids: ``[P]`` their ids in the sweep (seed the searches).
    layer_id: the layer's index (seeds the shared sample).
    settings: budget, objective, seed.
    devices: devices the points are split over.

  Returns:
    ``(mappings [P, ...], Stats [P, ...])`` numpy, the Stats holding the
    :data:`batched.ROW_STATS` fields (others None); a point with no valid
    mapping gets its best invalid one (``valid`` False).
  """
  s = settings
  q = -(-s.points_per_call // len(devices)) * len(devices)
  fn = batched.points_program(ms.structure, devices)
  elites = _Elites(len(params))
  sample_rng = np.random.default_rng([s.seed, layer_id])
  rngs = [np.random.default_rng([s.seed, layer_id, int(i), 1])
          for i in point_ids]
  for _ in range(s.sample_calls):
    shared = ms.sample_genome(sample_rng, s.children)
    for a, b in _chunks(len(params), q):
      _offer_all(elites, a, [shared] * (b - a), _evaluate(
          fn, ms, params[a:b], [shared] * (b - a), q), s.objective)
  for _ in range(s.generations):
    for a, b in _chunks(len(params), q):
      kids = [offspring(ms, rngs[i], elites.genomes[i], s.children)
              for i in range(a, b)]
      _offer_all(elites, a, kids, _evaluate(fn, ms, params[a:b], kids, q),
                 s.objective)
  best = Genome.concat([g.take(slice(0, 1)) for g in elites.genomes])
  stats = Stats(**{f.name: None for f in dataclasses.fields(Stats)})
  stats = dataclasses.replace(stats, **{
      k: np.stack([e[k][0] for e in elites.stats])
      for k in batched.ROW_STATS})
  return ms.decode(best), stats


def _offer_all(elites: _Elites, start: int, genomes: list, stats: dict,
               objective) -> None:
  keys = _keys(types.SimpleNamespace(**stats), objective)
  for j, g in enumerate(genomes):
    elites.offer(start + j, g, keys[j], {k: v[j] for k, v in stats.items()})
