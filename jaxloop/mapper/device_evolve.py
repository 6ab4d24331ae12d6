"""The evolutionary search with its generation loop on the device.

One compiled call runs ``gens`` generations (``lax.scan``).  A generation:

1. children: rank-biased parents of the local population (the ``P`` best
   distinct legal genomes since the last restart), one move each and a
   second and third with probability 0.5 and 0.2
   (:mod:`jaxloop.mapper.device_moves`, the moves of
   :mod:`jaxloop.mapper.evolve`); a ``random_fraction`` of the batch, and
   every child already bred (a direct-mapped table of canonical hashes
   remembers them), are fresh uniform draws (:meth:`Mapspace.draw_blocks`'s
   draw); an empty population (start, restart) gives a fully drawn batch;
2. decoded to the blocked layout and evaluated for the ranked totals only
   (``energy_total``, ``cycles``, ``valid``), the batch split over the
   local devices;
3. the best children merged into the population and the running top-k,
   each kept distinct by canonical hash; after ``patience`` generations
   without improving its best, the population restarts (the top-k stays).

Generation ``g`` is keyed by ``fold_in(PRNGKey(seed), g)``: same seed,
budget and batch, same result.  The host only dispatches calls (two in
flight), checks the budget and the time limit between calls, and writes one
log row per generation.
"""
from __future__ import annotations

import functools
import sys
import time
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np
from tqdm import tqdm

from jaxloop import shard, streaming
from jaxloop.evaluator import evaluator
from jaxloop.mapspace import Genome, Mapspace
from jaxloop.mapper import device_moves as mv
from jaxloop.mapper.driver import SearchResult, _row
from jaxloop.mapper.rules import StopRules

# Evaluations per compiled call (generations of ``batch`` rows).
CALL_ROWS = 65536
# Mappings per generation when the caller gives no ``batch``: each
# generation has fixed costs (the merges, the table of bred genomes, the
# devices' synchronization), so a generation is larger than the host
# loop's 4096.
DEVICE_EVOLVE_BATCH = 16384
# Slots of the table of bred genomes' hashes (a power of two).
SEEN_SLOTS = 1 << 18
# Chances of a child's second and third move.
EXTRA_MOVES = (0.5, 0.2)
_METRIC = {"energy": 0, "delay": 1, "edp": 2}


def _empty(k: int, L: int, D: int, S: int) -> dict:
  """An empty ranked set of ``k`` genomes (numpy): objective ``inf``."""
  return {"obj": np.full(k, np.inf), "hash": np.zeros(k, np.uint64),
          "aux": np.full((k, 2), np.inf), "fidx": np.zeros((k, D), np.int64),
          "order": np.broadcast_to(np.arange(D, dtype=np.int32),
                                   (k, L, D)).copy(),
          "keep": np.zeros((k, L, S), bool)}


def initial_state(ms: Mapspace, population: int, topk: int) -> dict:
  """The search state before generation 0 (numpy)."""
  s = ms.structure
  L, D, S = s.num_levels, s.num_dims, s.num_dataspaces
  return {"pop": _empty(population, L, D, S), "top": _empty(topk, L, D, S),
          "seen": np.zeros(SEEN_SLOTS, np.uint64), "stale": np.int64(0),
          "gen": np.int64(0), "evaluated": np.int64(0),
          "legal": np.int64(0)}


def _draw(ms: Mapspace, key: jax.Array, n: int) -> tuple:
  """``n`` uniform genomes, batch-first."""
  fidx, order, keep = ms._draw_genome(key, (1, n))
  return (jnp.moveaxis(fidx[0], -1, 0), jnp.moveaxis(order[0], -1, 0),
          jnp.moveaxis(keep[0], -1, 0))


def _pick_rows(genome: tuple, idx: jax.Array) -> tuple:
  return tuple(a[idx] for a in genome)


def _where_rows(mask: jax.Array, a: tuple, b: tuple) -> tuple:
  return tuple(jnp.where(mask.reshape((-1,) + (1,) * (x.ndim - 1)), x, y)
               for x, y in zip(a, b))


def _children(ms, t, key, pop, batch: int, random_fraction: float,
              split) -> tuple:
  """``batch`` genomes: mutated rank-biased parents of ``pop`` (rows
  ``>= (1 - random_fraction) * batch`` drawn fresh), and a pool of
  ``batch // 4`` fresh draws for replacing children bred before.
  ``split`` spreads a batch-first pytree over the devices."""
  L = ms.structure.num_levels
  k_par, k_mut, k_extra, k_fresh = jax.random.split(key, 4)
  alive = jnp.sum(jnp.isfinite(pop["obj"]))
  u = jax.random.uniform(k_par, (batch,), jnp.float64)
  parent = split(jnp.minimum((alive * u * u).astype(jnp.int64),
                             jnp.maximum(alive - 1, 0)))
  child = split(mv.mutate(t, k_mut, _pick_rows(
      (pop["fidx"], pop["order"], pop["keep"]), parent), L))
  for i, p in enumerate(EXTRA_MOVES):
    k_more, k_coin = jax.random.split(jax.random.fold_in(k_extra, i))
    more = jax.random.uniform(k_coin, (batch,), jnp.float64) < p
    child = split(_where_rows(more, mv.mutate(t, k_more, child, L), child))
  pool = max(1, batch // 4)
  fresh = split(_draw(ms, k_fresh, pool))
  n_kids = int(round(batch * (1.0 - random_fraction)))
  tail = jnp.arange(batch) >= n_kids
  child = _where_rows(tail, _pick_rows(fresh, jnp.arange(batch) % pool),
                      child)
  return child, fresh, n_kids


def _later_copies(h: jax.Array) -> jax.Array:
  """``bool[B]``: rows whose hash ``h [B]`` an earlier row has (a table of
  ``4B`` slots keeps each slot's first row; rows sharing a slot with a
  different hash are kept)."""
  B = h.shape[0]
  size = 1 << (4 * B - 1).bit_length()
  slot = (h & jnp.uint64(size - 1)).astype(jnp.int64)
  first = jnp.full(size, B, jnp.int64).at[slot].min(jnp.arange(B))[slot]
  return (first < jnp.arange(B)) & (h[jnp.minimum(first, B - 1)] == h)


def _not_bred(t, L, seen, child, fresh, n_kids: int) -> tuple:
  """Replaces the children bred before (their hash in ``seen`` or earlier
  in the batch) by rows of ``fresh``; ``(genomes, hashes, seen)``."""
  B = child[0].shape[0]
  h = mv.canonical_hash(t, child, L)
  slot = (h & jnp.uint64(SEEN_SLOTS - 1)).astype(jnp.int64)
  later = _later_copies(h)
  bred = ((seen[slot] == h) | later) & (jnp.arange(B) < n_kids)
  pool = fresh[0].shape[0]
  spare = (n_kids + jnp.cumsum(bred) - 1) % pool
  genome = _where_rows(bred, _pick_rows(fresh, spare), child)
  h = jnp.where(bred, mv.canonical_hash(t, fresh, L)[spare], h)
  slot = (h & jnp.uint64(SEEN_SLOTS - 1)).astype(jnp.int64)
  return genome, h, seen.at[slot].set(h)


def _to_mapping(ms: Mapspace, genome: tuple, lanes: int):
  """The blocked ``Mapping`` (``[nb, L, D, C]``) of batch-first genomes."""
  from jaxloop.types import Mapping
  fidx, order, keep = (jnp.moveaxis(a.reshape((-1, lanes) + a.shape[1:]),
                                    1, -1) for a in genome)
  temporal, spatial_x, spatial_y = ms._factor_fields(fidx)
  return Mapping(temporal=temporal, spatial_x=spatial_x, spatial_y=spatial_y,
                 order=order.astype(jnp.int32), keep=keep)


def _distinct_best(ranked: dict, obj, h, aux, genome: tuple) -> dict:
  """The ``k = len(ranked["obj"])`` best of ``ranked`` and the candidates
  (``obj [M]``, hashes, ``aux [M, 2]``, genomes), one per hash; ties go to
  the entry that came first (``ranked`` before the candidates)."""
  k = ranked["obj"].shape[0]
  all_obj = jnp.concatenate([ranked["obj"], obj])
  all_h = jnp.concatenate([ranked["hash"], h])
  n = all_obj.shape[0]
  idx = jnp.arange(n)
  _, _, by = jax.lax.sort((all_h, all_obj, idx), num_keys=3)
  dup = jnp.zeros(n, bool).at[by[1:]].set(all_h[by[1:]] == all_h[by[:-1]])
  _, sel = jax.lax.top_k(-jnp.where(dup, jnp.inf, all_obj), k)
  cat = lambda a, b: jnp.concatenate([a, b])[sel]
  fidx, order, keep = genome
  return {"obj": jnp.where(dup[sel], jnp.inf, all_obj[sel]),
          "hash": all_h[sel], "aux": cat(ranked["aux"], aux),
          "fidx": cat(ranked["fidx"], fidx),
          "order": cat(ranked["order"], order),
          "keep": cat(ranked["keep"], keep)}


def _generation(ms, t, structure, metric: int, batch: int, lanes: int,
                mesh, patience: int,
                random_fraction: float, params, base_key, limit, state):
  """One generation (see the module docstring); returns ``(state, log
  row)``: the row is ``(evaluated, legal, best objective, best energy,
  best cycles)`` after it."""
  L = structure.num_levels
  key = jax.random.fold_in(base_key, state["gen"].astype(jnp.uint32))
  k_kids, k_all = jax.random.split(key)
  pop = state["pop"]
  split = lambda tree: tree
  if mesh is not None:
    split = lambda tree: jax.lax.with_sharding_constraint(
        tree, shard.batch_sharding(mesh))

  def bred(_):
    child, fresh, n_kids = _children(ms, t, k_kids, pop, batch,
                                     random_fraction, split)
    return _not_bred(t, L, state["seen"], child, fresh, n_kids)

  def drawn(_):
    genome = split(_draw(ms, k_all, batch))
    h = mv.canonical_hash(t, genome, L)
    slot = (h & jnp.uint64(SEEN_SLOTS - 1)).astype(jnp.int64)
    return genome, h, state["seen"].at[slot].set(h)

  empty = ~jnp.isfinite(pop["obj"][0])
  genome, h, seen = jax.lax.cond(empty, drawn, bred, None)
  mapping = _to_mapping(ms, genome, lanes)
  if mesh is not None:
    mapping = jax.lax.with_sharding_constraint(
        mapping, shard.batch_sharding(mesh))
  stats = streaming._evaluate_chunk(structure, params, mapping, mesh)
  rows = jnp.clip(limit - state["evaluated"], 0, batch)
  ok = stats.valid & (jnp.arange(batch) < rows)
  metrics = streaming._chunk_metrics(stats, ok)                 # [3, B]
  obj = metrics[metric]
  m = min(batch, 2 * max(pop["obj"].shape[0], state["top"]["obj"].shape[0]))
  cand = streaming._smallest(obj, m)
  args = (obj[cand], h[cand], metrics[:2, cand].T, _pick_rows(genome, cand))
  new_pop = _distinct_best(pop, *args)
  top = _distinct_best(state["top"], *args)
  improved = new_pop["obj"][0] < pop["obj"][0]
  stale = jnp.where(improved, 0, state["stale"] + (rows > 0))
  restart = stale >= patience
  new_pop["obj"] = jnp.where(restart, jnp.inf, new_pop["obj"])
  evaluated = state["evaluated"] + rows.astype(jnp.int64)
  legal = state["legal"] + jnp.sum(ok).astype(jnp.int64)
  state = {"pop": new_pop, "top": top, "seen": seen,
           "stale": jnp.where(restart, 0, stale), "gen": state["gen"] + 1,
           "evaluated": evaluated, "legal": legal}
  return state, (evaluated, legal, top["obj"][0], top["aux"][0, 0],
                 top["aux"][0, 1])


@functools.lru_cache(maxsize=16)
def _call(ms: Mapspace, metric: int, batch: int, lanes: int, gens: int,
          devices: tuple, patience: int, random_fraction: float):
  """Jitted ``(state, params, key, limit, n) -> (state, rows [gens, 5])``:
  ``n <= gens`` generations (rows past ``n`` are zeros); evaluations past
  ``limit`` are not counted.  One program per batch shape whatever ``n``.
  """
  structure = ms.structure
  mesh = shard.batch_mesh(devices) if len(devices) > 1 else None
  t = mv.MoveTables.of(ms)

  def run(state, params, key, limit, n):
    body = functools.partial(_generation, ms, t, structure, metric, batch,
                             lanes, mesh, patience, random_fraction,
                             params, key, limit)

    def one(i, carry):
      st, rows = carry
      st, row = body(st)
      rows = rows.at[i].set(jnp.stack([jnp.asarray(x, jnp.float64)
                                       for x in row]))
      return st, rows

    return jax.lax.fori_loop(0, n, one,
                             (state, jnp.zeros((gens, 5), jnp.float64)))

  if mesh is None:
    return jax.jit(run, donate_argnums=(0,))
  rep = shard.replicated(mesh)
  return jax.jit(run, in_shardings=rep, out_shardings=rep,
                 donate_argnums=(0,))


def device_evolve_search(workload, *, names: tuple[str, ...],
                         budget: Optional[int], time_limit: Optional[float],
                         seed: int, topk: int, batch: int, progress: bool,
                         rules: StopRules = StopRules(), params=None,
                         population: int = 64, random_fraction: float = 0.1,
                         patience: int = 30) -> SearchResult:
  """Evolutionary search run on the device (module docstring).

  ``batch`` rows per generation (rounded up to whole blocks per device),
  ``CALL_ROWS // batch`` generations per compiled call (fewer when the
  budget needs fewer).  The budget is exact; a time limit is checked
  between calls (the calls in flight finish; at least one runs).  Same
  seed, budget and batch: same result.
  """
  start = time.perf_counter()
  ms = workload.mapspace
  devs = tuple(jax.local_devices())
  batch, lanes = streaming._chunk_layout(int(batch), len(devs))
  gens = max(1, CALL_ROWS // batch)
  need = None if budget is None else -(-max(int(budget), 0) // batch)
  mesh = shard.batch_mesh(devs) if len(devs) > 1 else None
  put = streaming._put_replicated(mesh)
  step = _call(ms, _METRIC[names[0]], batch, lanes, gens, devs,
               int(patience), float(random_fraction))
  state = put(initial_state(ms, int(population), max(int(topk), 1)))
  p = put(jax.tree.map(jnp.asarray,
                       workload.params if params is None else params))
  key = put(jax.random.PRNGKey(int(seed)))
  limit = np.int64(np.iinfo(np.int64).max if budget is None
                   else max(int(budget), 0))
  bar = tqdm(total=budget, desc="evolve", unit="map",
             disable=not (progress and sys.stderr.isatty()), leave=False)
  log: list[dict] = []
  pending, done, reason = [], 0, ""
  while True:
    if need is not None and done >= need:
      reason = "budget"
      break
    if (time_limit is not None and done
        and time.perf_counter() - start >= time_limit):
      reason = "time"
      break
    n = gens if need is None else min(gens, need - done)
    state, rows = step(state, p, key, limit, np.int64(n))
    pending.append((rows, n))
    done += n
    if len(pending) > 2:
      _log_rows(log, bar, *pending.pop(0), start)
  for rows in pending:
    _log_rows(log, bar, *rows, start)
  bar.close()
  top = jax.tree.map(np.asarray, state["top"])
  return _result(workload, top, names, topk, log, int(state["evaluated"]),
                 int(state["legal"]), reason, budget, time_limit, rules,
                 params, start)


def _log_rows(log: list, bar, rows: jax.Array, n: int, start: float
              ) -> None:
  """Appends one log row per generation (of the ``n`` of a call's
  ``rows [gens, 5]``) that evaluated something."""
  evaluated, legal, obj, energy, cycles = np.asarray(
      jax.block_until_ready(rows))[:n].T
  now = round(time.perf_counter() - start, 4)
  done = log[-1]["evaluated"] if log else 0
  for i in range(n):
    if int(evaluated[i]) == done:
      continue
    bar.update(int(evaluated[i]) - done)
    done = int(evaluated[i])
    log.append({"time_s": now, "evaluated": done, "legal": int(legal[i]),
                "best_objective": float(obj[i]),
                "best_energy_pj": float(energy[i]),
                "best_cycles": float(cycles[i]), "relaxed_evaluated": 0})


def _result(workload, top: dict, names, topk: int, log: list,
            evaluated: int, legal: int, reason: str, budget, time_limit,
            rules, params, start: float) -> SearchResult:
  """The :class:`SearchResult` of the final top-k (already distinct),
  evaluated again for full Stats."""
  ms = workload.mapspace
  ok = np.nonzero(np.isfinite(top["obj"]))[0][:topk]
  entries = []
  if len(ok):
    maps = ms.decode(Genome(top["fidx"][ok], top["order"][ok],
                            top["keep"][ok]))
    stats = jax.tree.map(np.asarray, evaluator(workload)(maps, params))
    entries = [((float(top["obj"][j]),), _row(maps, i), _row(stats, i))
               for i, j in enumerate(ok)]
  best_k, best_m, best_s = entries[0] if entries else (None, None, None)
  return SearchResult(
      best_mapping=best_m, best_stats=best_s, best_objective=best_k,
      topk=entries, log=log, mapspace_size=ms.size(), objective=names,
      evaluated=evaluated, legal=legal, elapsed=time.perf_counter() - start,
      stop_reason=reason, method="evolve", rules=rules, budget=budget,
      time_limit=time_limit)
