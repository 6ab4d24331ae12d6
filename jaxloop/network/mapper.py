"""Map a whole network: every distinct layer once, programs shared by kind.

>>> res = map_network(["top.yaml.jinja2"], ["layer_shapes/resnet18"],
...                   variables={"architecture": "eyeriss_like"},
...                   time_limit_per_layer=2)
>>> res.totals["energy_pj"], res.compiles, len(res.kinds)

Layers whose problems are identical are mapped once (their repeat counts
add up).  Distinct layers are grouped into kinds (:mod:`jaxloop.network.
kinds`); each kind's programs (one model program: the search's batch with
every statistic, which also gives the best mapping's; one mapspace draw of
the search's batch size) are compiled once, before the searches, so compile
time never eats into a layer's search time, and later layers of the kind
reuse them.
"""
from __future__ import annotations

import dataclasses
import os
import time
from typing import Optional, Sequence

import jax
import numpy as np

from jaxloop.api import Workload
from jaxloop.evaluator import evaluator
from jaxloop.mapper import method_options, resolve_method, search
from jaxloop.mapper.driver import SEARCH_STATS, SearchResult, \
    fixed_batch_evaluator
from jaxloop.network import kinds as kinds_lib
from jaxloop.network.compiles import recording
from jaxloop.network.layers import Layer, load_layers, unique_names
from jaxloop.network.workloads import load_workloads, with_kind
from jaxloop.precision import exact
from jaxloop.types import Stats, edp

# Mappings per evaluation of the network searches (one compiled shape).
SEARCH_BATCH = 4096


@dataclasses.dataclass
class LayerResult:
  """One distinct layer of the network and its best mapping.

  Attributes:
    name: the first of its layers' names (``names`` lists them all).
    repeat: how many times the network runs it (sum over ``names``).
    workload: the layer's workload (its ``kind`` set).
    kind: index into :attr:`NetworkResult.kinds`.
    search: the :class:`~jaxloop.mapper.SearchResult` (best mapping and
      its full Stats, or None if no legal mapping was found).
  """
  name: str
  names: tuple[str, ...]
  repeat: int
  workload: Workload
  kind: int
  search: SearchResult

  @property
  def stats(self) -> Optional[Stats]:
    return self.search.best_stats

  @property
  def mapping(self):
    return self.search.best_mapping


@dataclasses.dataclass
class NetworkResult:
  """The mapped network.

  Attributes:
    layers: ``[distinct layers]`` in order of first appearance.
    kinds: ``[K]`` short names of the layer kinds (compiled programs).
    compiles: model programs compiled during the run (1 per kind with
      the ``evolve`` search: its batch of :data:`SEARCH_BATCH` mappings
      with every statistic; 0 when this process compiled it before).
    compile_seconds: time spent tracing and compiling them.
    draw_compiles, draw_compile_seconds: the same for the mapspace draws
      (1 per kind: every draw runs at :data:`SEARCH_BATCH` lanes).
    seconds: ``{"load", "compile", "search", "total"}`` wall times.
  """
  layers: list[LayerResult]
  kinds: list[str]
  compiles: int
  compile_seconds: float
  draw_compiles: int
  draw_compile_seconds: float
  seconds: dict

  @property
  def totals(self) -> dict:
    """Network totals, each layer weighted by its repeat count: energy
    (pJ), cycles (layers run one after another), MACs, per-level energy
    (pJ), and the network's EDP (J*cycles) from the totals."""
    done = [r for r in self.layers if r.stats is not None]
    energy = sum(r.repeat * float(r.stats.energy_total) for r in done)
    cycles = sum(r.repeat * float(r.stats.cycles) for r in done)
    levels = self.layers[0].workload.structure.level_names
    per_level = {name: sum(r.repeat * float(r.stats.level_energy[i])
                           for r in done) for i, name in enumerate(levels)}
    return {"energy_pj": energy, "cycles": cycles,
            "computes": sum(r.repeat * float(r.stats.computes)
                            for r in done),
            "edp": float(edp(energy, cycles)),
            "level_energy_pj": per_level,
            "layers": sum(len(r.names) for r in self.layers),
            "layer_runs": sum(r.repeat for r in self.layers),
            "distinct_layers": len(self.layers),
            "unmapped": [r.name for r in self.layers if r.stats is None]}


@exact
def map_network(arch_files: Sequence[str | os.PathLike],
                layers: Sequence[Layer | str | os.PathLike], *,
                variables: Optional[dict] = None,
                time_limit_per_layer: Optional[float] = None,
                budget_per_layer: Optional[int] = None,
                method: str = "evolve", objective: str = "edp",
                seed: int = 0, strict: bool = False,
                progress: bool = False) -> NetworkResult:
  """Maps every distinct layer of a network on one architecture.

  Args:
    arch_files: architecture files (plain, or templates rendered with
      ``variables`` and ``problem`` set to each layer's file).
    layers: :class:`Layer` objects, or paths :func:`load_layers` reads
      (problem files, folders, globs, network YAML, ONNX).
    variables: template variables (e.g. ``{"architecture":
      "eyeriss_like"}``).
    time_limit_per_layer: search seconds per distinct layer (compile time
      excluded); default 2 s when no budget is given.
    budget_per_layer: mappings evaluated per distinct layer (same seed,
      same result).
    method: a :func:`jaxloop.search` method (Timeloop's victory, timeout
      and search-size rules of the files' ``mapper:`` section are off:
      the limits above end each search).
    objective: as :func:`jaxloop.search`.
    seed: the searches' seed.
    strict: spec warnings raised as errors.
    progress: a progress bar per search (on a terminal).

  Raises:
    SpecError: bad architecture or layer input.
  """
  t0 = time.perf_counter()
  layers = _as_layers(layers)
  if time_limit_per_layer is None and budget_per_layer is None:
    time_limit_per_layer = 2.0
  wls = load_workloads(arch_files, layers, variables, strict)
  groups = _distinct(layers, wls)
  kind_of = kinds_lib.group_kinds(w.structure for _, w, _ in groups)
  keys = list(kind_of)
  wl_of = [with_kind(w, kind_of[kinds_lib.kind_key(w.structure)])
           for _, w, _ in groups]
  _share_draws(wl_of)
  options = _search_options(wl_of[0], method)
  t1 = time.perf_counter()
  with recording() as log:
    _compile_kinds(wl_of, keys, all_stats="stats" in options)
    t2 = time.perf_counter()
    results = []
    for (names, _, repeat), wl in zip(groups, wl_of):
      res = search(wl, method, objective=objective,
                   time_limit=time_limit_per_layer, budget=budget_per_layer,
                   seed=seed, topk=1, progress=progress, victory=0,
                   timeout=0, search_size=0, **options)
      results.append(LayerResult(
          name=names[0], names=names, repeat=repeat, workload=wl,
          kind=keys.index(kinds_lib.kind_key(wl.structure)), search=res))
  t3 = time.perf_counter()
  names = [kinds_lib.describe(next(w.structure for w in wl_of if
                                   kinds_lib.kind_key(w.structure) == k))
           for k in keys]
  return NetworkResult(
      layers=results, kinds=names, compiles=log.count,
      compile_seconds=log.seconds, draw_compiles=log.draws,
      draw_compile_seconds=log.draw_seconds,
      seconds={"load": t1 - t0, "compile": t2 - t1, "search": t3 - t2,
               "total": t3 - t0})


def _as_layers(items) -> list[Layer]:
  """Layers as given, paths read by :func:`load_layers`; unique names."""
  out: list[Layer] = []
  for x in items:
    out += [x] if isinstance(x, Layer) else load_layers([x])
  return unique_names(out)


def _distinct(layers: Sequence[Layer], wls: Sequence[Workload]):
  """``[(names, workload, repeat)]``: layers with identical problems (same
  structure) merged, in order of first appearance."""
  merged: dict = {}
  for layer, wl in zip(layers, wls):
    names, first, repeat = merged.get(wl.structure, ((), wl, 0))
    merged[wl.structure] = (names + (layer.name,), first,
                            repeat + layer.repeat)
  return list(merged.values())


def _search_options(wl: Workload, method: str) -> dict:
  """The searches' options: batches of :data:`SEARCH_BATCH`, and every
  statistic computed in the loop where the method allows (the best
  mapping's statistics then need no second program)."""
  accepted = method_options(resolve_method(wl, method))
  wanted = {"batch": SEARCH_BATCH, "stats": None}
  return {k: v for k, v in wanted.items() if k in accepted}


def _share_draws(wls: Sequence[Workload]) -> None:
  """Pads the draw tables of each kind's mapspaces to the kind's largest,
  so that they share one compiled draw (:attr:`Mapspace.draw_padding`),
  and draws every batch at :data:`SEARCH_BATCH` lanes
  (:attr:`Mapspace.draw_lanes`): one draw program per kind."""
  shapes: dict = {}
  for wl in wls:
    key = kinds_lib.kind_key(wl.structure)
    own = wl.mapspace.draw_table_shapes()
    have = shapes.get(key, own)
    shapes[key] = tuple(tuple(max(a, b) for a, b in zip(x, y))
                        for x, y in zip(have, own))
  for wl in wls:
    wl.mapspace.draw_padding = shapes[kinds_lib.kind_key(wl.structure)]
    wl.mapspace.draw_lanes = SEARCH_BATCH


def _compile_kinds(wls: Sequence[Workload], keys: list,
                   all_stats: bool = True) -> None:
  """Compiles each kind's programs once, from its first layer: the
  mapspace's draw (:attr:`Mapspace.draw_lanes` lanes, whatever a search
  asks for) and the search's fixed batch of :data:`SEARCH_BATCH` mappings.
  With ``all_stats`` that batch computes every statistic and also gives
  the best mapping's; otherwise it computes :data:`SEARCH_STATS` and the
  full statistics of one mapping are a second program."""
  first = {}
  for wl in wls:
    first.setdefault(kinds_lib.kind_key(wl.structure), wl)
  rng = np.random.default_rng(0)
  for key in keys:
    wl = first[key]
    m = wl.mapspace.sample(rng, 1)
    if all_stats:
      fixed_batch_evaluator(wl, SEARCH_BATCH, None)(m)
    else:
      fixed_batch_evaluator(wl, SEARCH_BATCH, SEARCH_STATS)(m)
      jax.block_until_ready(evaluator(wl)(m))
