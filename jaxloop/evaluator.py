"""Batched evaluation: one factory, :func:`evaluator`.

>>> ev = jaxloop.evaluator(workload)
>>> stats = ev(mappings)                 # Mapping [B, ...] -> Stats [B, ...]
>>> fast = ev(jaxloop.Blocked.of(mappings))   # blocked in, blocked out
>>> fast.field("energy_total")           # [B]

The evaluator compiles one program per (structure, batch shape, devices,
kept statistics) and splits the batch over all local devices.  Two input
layouts:

* batch-first ``Mapping`` leaves ``[B, L, D]``: simplest; each block of
  mappings is transposed to the model's batch-last layout inside the
  program and every statistic back.
* :class:`Blocked`: leaves held as ``[nb, *shape, C]`` (C mappings per
  block, batch-last inside a block), exactly what the model computes on: no
  transposes, the fast path for large batches.  Results come back blocked;
  :meth:`Blocked.field` reads one statistic as ``[B, ...]``.

Options of the factory: ``stats`` (names of the statistics to keep: the
others are never written), ``recycle`` (each call writes into the buffers of
the previous call's result, which is consumed: no fresh memory to zero per
call).
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Any, Optional, Sequence

import jax
import numpy as np

from jaxloop import shard
from jaxloop.model import blocks
from jaxloop.model.evaluate import evaluate, evaluate_batch
from jaxloop.precision import exact
from jaxloop.structure import Structure, check_bandwidths
from jaxloop.types import ArchParams, Mapping, Stats, _pytree

STAT_NAMES = tuple(f.name for f in dataclasses.fields(Stats))


@_pytree(meta=("size",))
class Blocked:
  """A batch of ``size`` rows in the blocked layout (a pytree; ``size`` is
  static).

  Attributes:
    data: a pytree (``Mapping`` or ``Stats``) whose leaves are
      ``[nb, *shape, C]``: row b is block ``b // C``, lane ``b % C``.
      Lanes past ``size`` are padding (copies of the last row).
    size: B, the number of real rows.
  """
  data: Any
  size: int

  @classmethod
  def of(cls, tree, lanes: Optional[int] = None,
         multiple: Optional[int] = None) -> "Blocked":
    """Blocks a batch-first pytree ``[B, *shape]`` (numpy stays numpy).

    Args:
      tree: e.g. a ``Mapping`` with a leading batch axis.
      lanes: C (default :func:`default_lanes`).
      multiple: round the block count up to a multiple of this (default:
        the local device count, so blocks split evenly over devices).
    """
    multiple = jax.local_device_count() if multiple is None else multiple
    size = int(np.shape(jax.tree.leaves(tree)[0])[0])
    return cls(blocks.to_blocks(tree, lanes, multiple), size)

  @property
  def lanes(self) -> int:
    return int(np.shape(jax.tree.leaves(self.data)[0])[-1])

  @property
  def num_blocks(self) -> int:
    return int(np.shape(jax.tree.leaves(self.data)[0])[0])

  def unblock(self):
    """The batch-first pytree ``[B, *shape]`` (padding dropped)."""
    return blocks.from_blocks(self.data, self.size)

  def field(self, name: str):
    """One field as ``[B, *shape]`` (a reshape for per-row scalars)."""
    return blocks.from_blocks(getattr(self.data, name), self.size)

  def take(self, index):
    """Rows ``index`` (``[K]`` positions) as a batch-first pytree."""
    return blocks.take(self.data, np.asarray(index))

  def __len__(self) -> int:
    return self.size


def default_lanes() -> int:
  """C, mappings per block: on CPU 64 with one JAX device per core (a
  block's intermediates stay in the core's caches) and 1024 with one device
  for all cores; 2**17 on accelerators (one block per kernel sequence)."""
  return blocks.default_lanes()


def _keeper(stats: Optional[Sequence[str]]):
  """``fn(Stats) -> Stats`` keeping only ``stats`` (others None), or None.
  """
  if stats is None:
    return None
  keep = tuple(stats)
  bad = [n for n in keep if n not in STAT_NAMES]
  if bad:
    raise ValueError(f"unknown statistics {bad}; Stats fields are "
                     f"{', '.join(STAT_NAMES)}")
  return lambda s: s.only(keep)


@functools.lru_cache(maxsize=128)
def _compiled(structure: Structure, devices: tuple, keep: Optional[tuple],
              layout: str, recycle: bool, bounded: bool = False):
  """The jitted ``fn(params, mappings[, out])`` for one configuration;
  ``bounded``: its first argument is ``(params, bounds [D])``, the dim
  bounds as data for a structure shared by a layer kind."""
  pick = _keeper(keep)

  def model(fn):
    """``fn(structure, params, ...)`` taking params (and bounds)."""
    if not bounded:
      return functools.partial(fn, structure)
    return lambda pb, *a, **k: fn(structure, pb[0], *a, bounds=pb[1], **k)

  if layout == "single":
    fn = model(evaluate)
    return jax.jit(_named(fn if pick is None
                          else lambda p, m: pick(fn(p, m))))
  mesh = shard.batch_mesh(devices) if len(devices) > 1 else None
  run_blocks = model(blocks.evaluate_blocks)
  if layout == "blocked":
    if recycle:
      body = lambda p, m, out: run_blocks(p, m, pick=pick, out=out)
    else:
      body = lambda p, m: run_blocks(p, m, pick=pick)
  else:
    body = model(evaluate_batch)
    if pick is not None:
      body = lambda p, m, _b=body: pick(_b(p, m))
  donate = (2,) if recycle else ()
  if mesh is None:
    return jax.jit(_named(body), donate_argnums=donate)
  return shard.sharded_jit(_named(body), mesh, recycle)


# The name JAX's compile events (``jax.monitoring``) give the evaluator's
# programs: what ``jaxloop.network`` counts as model compiles.
PROGRAM_NAME = "jaxloop_model"


def _named(fn):
  """``fn`` under the name :data:`PROGRAM_NAME`."""
  def jaxloop_model(*args):
    return fn(*args)
  return jaxloop_model


class Evaluator:
  """``ev(mappings, params=None) -> Stats``: see :func:`evaluator`."""

  def __init__(self, structure: Structure, params: ArchParams,
               stats: Optional[Sequence[str]] = None, recycle: bool = False,
               devices: Optional[Sequence[jax.Device]] = None,
               kind: Optional[Structure] = None):
    self.structure, self.params = structure, params
    # A layer kind's structure compiles the programs; the problem's bounds
    # go in as data (``jaxloop.network.kinds``).
    self.program = structure if kind is None else kind
    self.bounds = (None if kind is None
                   else np.asarray(structure.dim_bounds, np.int64))
    self.keep = None if stats is None else tuple(stats)
    _keeper(self.keep)            # unknown names fail here, not in a trace
    self.recycle = bool(recycle)
    self.devices = tuple(jax.local_devices() if devices is None
                         else devices)
    self._last, self._last_shape = None, None
    self._used: dict = {}

  def _program(self, devices: tuple, layout: str, recycle: bool = False):
    fn = _compiled(self.program, devices, self.keep, layout, recycle,
                   self.bounds is not None)
    self._used[id(fn)] = fn
    return fn

  def compiles(self) -> int:
    """Compilations of the programs this evaluator has called, in this
    process (programs are shared by evaluators of the same structure and
    options; one per input layout and shape): new data of a seen shape adds
    none."""
    return sum(fn._cache_size() for fn in self._used.values())

  def put(self, mappings, lanes: Optional[int] = None) -> Blocked:
    """A batch as :class:`Blocked`, placed on this evaluator's devices (the
    block count padded to a multiple of them): the fastest input for
    repeated calls.

    Args:
      mappings: batch-first ``Mapping`` ``[B, ...]`` or a :class:`Blocked`.
      lanes: C, mappings per block (default :func:`default_lanes`).
    """
    ndev = len(self.devices)
    if not isinstance(mappings, Blocked):
      mappings = Blocked.of(mappings, lanes, multiple=ndev)
    data = mappings.data
    if mappings.num_blocks % ndev:
      data = blocks.pad_blocks(data, shard.round_up(mappings.num_blocks,
                                                    ndev))
    where = (shard.batch_sharding(shard.batch_mesh(self.devices))
             if ndev > 1 else self.devices[0])
    return Blocked(jax.device_put(data, where), mappings.size)

  @exact
  def __call__(self, mappings, params: Optional[ArchParams] = None):
    """Statistics of ``mappings``.

    Args:
      mappings: one ``Mapping`` (leaves ``[L, D]``), a batch-first batch
        (``[B, L, D]``), or a :class:`Blocked` batch.
      params: architecture numbers (default: the workload's); finite
        bandwidths only where ``structure.bandwidth_limited`` allows
        (otherwise a SpecError names the fix).

    Returns:
      ``Stats`` shaped like the input (a :class:`Blocked` for blocked
      input); with ``stats=`` only those fields, the others None.  Arrays
      stay on the device until read.
    """
    if params is None:
      params = self.params
    else:
      check_bandwidths(self.structure, params)
    if self.bounds is not None:
      params = (params, self.bounds)
    if isinstance(mappings, Blocked):
      return self._blocked(mappings, params)
    if np.ndim(mappings.temporal) == 2:
      return self._program((), "single")(params, mappings)
    return self._batch_first(mappings, params)

  def _batch_first(self, mappings: Mapping, params) -> Stats:
    n = int(np.shape(mappings.temporal)[0])
    ndev = len(self.devices)
    padded = blocks.pad_rows(mappings, shard.round_up(n, ndev))
    fn = self._program(self.devices if ndev > 1 else (), "batch")
    out = fn(params, padded)
    return out if n == int(np.shape(padded.temporal)[0]) else jax.tree.map(
        lambda a: a[:n], out)

  def _blocked(self, batch: Blocked, params) -> Blocked:
    ndev = len(self.devices)
    data = batch.data
    if batch.num_blocks % ndev:
      data = blocks.pad_blocks(data, shard.round_up(batch.num_blocks, ndev))
    devs = self.devices if ndev > 1 else ()
    if not self.recycle:
      out = self._program(devs, "blocked")(params, data)
      return Blocked(out, batch.size)
    shape = np.shape(jax.tree.leaves(data)[0])
    last = self._last if self._last_shape == shape else None
    out = self._program(devs, "blocked", True)(params, data, last)
    self._last, self._last_shape = out, shape
    return Blocked(out, batch.size)


def evaluator(workload, *, stats: Optional[Sequence[str]] = None,
              recycle: bool = False,
              devices: Optional[Sequence[jax.Device]] = None) -> Evaluator:
  """A compiled, batched evaluator of ``workload``'s mappings.

  Args:
    workload: a :class:`jaxloop.Workload` (structure and params; its
      ``kind``, when set, is the structure the programs are compiled for,
      shared by the layers of that kind).
    stats: names of the ``Stats`` fields to compute and return (e.g.
      ``("energy_total", "cycles", "valid")``); default all.
    recycle: for :class:`Blocked` input, write each result into the buffers
      of this evaluator's previous result of the same shape (that result's
      arrays are deleted: copy what you keep first).  Saves zeroing fresh
      memory on every call of a long sweep.
    devices: devices to split the batch over (default all local devices).

  Returns:
    :class:`Evaluator`: ``ev(mappings, params=None)``.
  """
  return Evaluator(workload.structure, workload.params, stats=stats,
                   recycle=recycle, devices=devices,
                   kind=getattr(workload, "kind", None))
