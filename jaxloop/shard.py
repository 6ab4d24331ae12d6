"""The batch axis split over all local devices (``jax.sharding``).

The model has no interaction between the mappings of a batch, so sharding
the leading batch axis ``B`` over a 1-D device mesh gives the same numbers as
one device, bit for bit (each row runs the same per-mapping code).

>>> fn = make_sharded_evaluator(structure)         # all local devices
>>> stats = evaluate_sharded(structure, params, mappings)   # any B, numpy
"""
from __future__ import annotations

import functools
import os
from typing import Optional, Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from jaxloop.model import blocks
from jaxloop.model.evaluate import evaluate_batch
from jaxloop.structure import Structure
from jaxloop.types import ArchParams, Mapping, Stats

AXIS = "batch"


def use_cpu_cores(count: Optional[int] = None) -> int:
  """Give JAX one CPU device per core (call before any JAX computation).

  XLA runs one CPU device's kernels largely on one thread, so a batch
  sharded over one device per core (this module, and the search and
  stream paths, which shard over all local devices) keeps every core busy:
  on the 2-core CI machine the eyeriss_like model evaluates about 1.5-1.8x
  more mappings per second over 2 CPU devices than over one at batch
  10**4-10**5 (``experiments/bench_model.py --cpu-devices 1`` vs the
  default: 3.3-3.5e5/s vs 5.0-6.3e5/s).

  Also asks XLA for 512-bit vectors where the CPU has them
  (:func:`prefer_wide_vectors`).

  Leaves the device count alone when the user chose it (``XLA_FLAGS`` with
  ``--xla_force_host_platform_device_count`` or ``JAX_NUM_CPU_DEVICES``)
  and when JAX's backends are already initialized.

  Args:
    count: devices to create (default: the cores this process may use).

  Returns:
    The number of CPU devices requested, or 0 where the setting was left
    alone.
  """
  prefer_wide_vectors()
  if ("xla_force_host_platform_device_count" in os.environ.get("XLA_FLAGS", "")
      or os.environ.get("JAX_NUM_CPU_DEVICES")):
    return 0
  if count is None:
    count = len(os.sched_getaffinity(0)) if hasattr(
        os, "sched_getaffinity") else (os.cpu_count() or 1)
  try:
    jax.config.update("jax_num_cpu_devices", int(count))
  except RuntimeError:   # backends already initialized: keep what is there
    return 0
  return int(count)


def _has_avx512() -> bool:
  try:
    with open("/proc/cpuinfo") as f:
      return any(line.startswith("flags") and " avx512f" in line
                 for line in f)
  except OSError:
    return False


def prefer_wide_vectors() -> bool:
  """Let XLA:CPU vectorize with 512-bit registers on AVX-512 machines.

  XLA's CPU backend emits 256-bit vector loops by default.  The model's
  kernels are elementwise loops over the batch (64 float64 values per block,
  :func:`jaxloop.model.evaluate.default_block`), which run about 15 %
  faster with 512-bit vectors on the 2-core CI machine (Xeon, AVX-512;
  ``experiments/bench_model.py``).  Appends
  ``--xla_cpu_prefer_vector_width=512`` to ``XLA_FLAGS`` unless the user
  set a width; takes effect only before JAX's CPU backend starts.

  Returns:
    True when the flag was added.
  """
  flags = os.environ.get("XLA_FLAGS", "")
  if "xla_cpu_prefer_vector_width" in flags or not _has_avx512():
    return False
  os.environ["XLA_FLAGS"] = (
      flags + " --xla_cpu_prefer_vector_width=512").strip()
  return True


HUGE_PAGES = "glibc.malloc.hugetlb=1"
_THP = "/sys/kernel/mm/transparent_hugepage/enabled"


def use_huge_pages(execve=os.execve, thp: str = _THP) -> bool:
  """Re-run this command with glibc's malloc asking for huge pages.

  A large batch writes its statistics into freshly allocated memory (about
  2.4 GB for 10**6 eyeriss_like mappings).  With 4 KiB pages the kernel
  takes a page fault every 4 KiB, about 0.2 s per GB on the 2-core CI
  machine: at 10**6 mappings that was a fifth of the run.  glibc (2.35
  and later) advises its large allocations for transparent huge pages when
  ``GLIBC_TUNABLES`` holds ``glibc.malloc.hugetlb=1``, which it reads only
  at process start, so this re-executes the same command line
  (``sys.orig_argv``) once with it set: ``experiments/bench_model.py`` at
  10**6 went from 6.0-6.4e5/s to 7.6-7.7e5/s.  The CLI and the benchmarks
  call it first thing.

  Does nothing (returns False) where transparent huge pages are off or
  absent (``never``, not Linux), in an interactive session or a script
  read from stdin, when ``GLIBC_TUNABLES`` already sets
  ``glibc.malloc.hugetlb`` (also after the re-exec), or when
  ``JAXLOOP_NO_REEXEC`` is set.  Other glibc versions ignore the tunable.

  Args:
    execve: replaces the process (tests pass a recorder).
    thp: the kernel's transparent-huge-page mode file.
  """
  import sys
  tunables = os.environ.get("GLIBC_TUNABLES", "")
  if ("glibc.malloc.hugetlb" in tunables or os.environ.get("JAXLOOP_NO_REEXEC")
      or not getattr(sys, "orig_argv", None)
      or sys.argv[0] in ("", "-")):   # interactive, or a script on stdin
    return False
  try:
    with open(thp) as f:
      mode = f.read()
  except OSError:
    return False
  if "[never]" in mode:
    return False
  env = dict(os.environ)
  env["GLIBC_TUNABLES"] = ":".join(t for t in (tunables, HUGE_PAGES) if t)
  sys.stdout.flush()
  sys.stderr.flush()
  execve(sys.executable, list(sys.orig_argv), env)
  return True


def batch_mesh(devices: Optional[Sequence[jax.Device]] = None) -> Mesh:
  """1-D mesh named ``batch`` over ``devices`` (default: all local ones)."""
  devs = tuple(jax.local_devices() if devices is None else devices)
  return Mesh(np.asarray(devs, dtype=object), (AXIS,))


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Leading axis split over the mesh, other axes whole."""
  return NamedSharding(mesh, PartitionSpec(AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
  """Every device holds the whole array."""
  return NamedSharding(mesh, PartitionSpec())


def round_up(n: int, multiple: int) -> int:
  """Smallest multiple of ``multiple`` that is >= ``n`` (and >= multiple)."""
  multiple = max(1, int(multiple))
  return max(multiple, -(-int(n) // multiple) * multiple)


def pad_batch(tree, size: int):
  """Pads every leaf's leading axis to ``size`` by repeating row 0 (numpy).

  Args:
    tree: pytree of arrays ``[B, ...]`` with ``B <= size`` and ``B >= 1``.
    size: the padded batch length.

  Returns:
    The padded pytree (numpy leaves ``[size, ...]``).
  """
  def pad(a):
    a = np.asarray(a)
    extra = size - a.shape[0]
    if extra <= 0:
      return a
    return np.concatenate([a, np.repeat(a[:1], extra, axis=0)])

  return jax.tree.map(pad, tree)


def per_device_batches(structure: Structure, mesh: Mesh,
                       blocked: bool = False, pick=None,
                       recycle: bool = False):
  """``fn(params, mappings) -> Stats`` (traceable) with each device of
  ``mesh`` running :func:`evaluate_batch` on its own rows (``shard_map``).

  With ``blocked`` the mappings and stats are in the blocked layout
  (:mod:`jaxloop.model.blocks`) and each device runs
  :func:`~jaxloop.model.blocks.evaluate_blocks` (with ``pick``) on its own
  blocks; with ``recycle`` too, ``fn(params, blocks, out)`` writes into
  the buffers of ``out`` (an earlier result, split the same way).

  Left to the automatic partitioner, the batch loop's dynamic slices make
  every device run the whole batch; inside ``shard_map`` each runs its
  share.
  """
  if recycle:
    fn = lambda params, m, out: blocks.evaluate_blocks(
        structure, params, m, pick=pick, out=out)
  elif blocked:
    fn = functools.partial(blocks.evaluate_blocks, structure, pick=pick)
  else:
    fn = functools.partial(evaluate_batch, structure)
  specs = (PartitionSpec(), PartitionSpec(AXIS)) + (
      (PartitionSpec(AXIS),) if recycle else ())
  return jax.shard_map(fn, mesh=mesh, in_specs=specs,
                       out_specs=PartitionSpec(AXIS))


@functools.lru_cache(maxsize=64)
def _sharded(structure: Structure, devices: tuple, blocked: bool,
             recycle: bool):
  mesh = batch_mesh(devices)
  shards = (replicated(mesh), batch_sharding(mesh))
  if recycle:
    return jax.jit(per_device_batches(structure, mesh, True, recycle=True),
                   in_shardings=shards + (batch_sharding(mesh),),
                   out_shardings=batch_sharding(mesh), donate_argnums=2)
  return jax.jit(per_device_batches(structure, mesh, blocked),
                 in_shardings=shards, out_shardings=batch_sharding(mesh))


def make_sharded_evaluator(structure: Structure,
                           devices: Optional[Sequence[jax.Device]] = None,
                           blocked: bool = False, recycle: bool = False):
  """``fn(params, mappings) -> Stats`` with the batch split over devices.

  Like :func:`jaxloop.model.evaluate.make_evaluator`, one compilation per
  (structure, batch size).  The batch size (with ``blocked``: the block
  count) must be a multiple of the device count (see :func:`pad_batch`,
  :func:`round_up`, ``to_blocks(..., multiple=)``); outputs stay sharded
  on the devices until read.

  Args:
    structure: static structure.
    devices: devices of the mesh (default: ``jax.local_devices()``).
    blocked: mappings and stats in the blocked layout
      (:mod:`jaxloop.model.blocks`), split over devices by blocks.
    recycle: (blocked) ``fn(params, blocks, out)`` with ``out`` an
      earlier result (or None) whose buffers are donated and reused, as
      :func:`jaxloop.model.blocks.make_block_evaluator` with ``recycle``.
  """
  devs = tuple(jax.local_devices() if devices is None else devices)
  return _sharded(structure, devs, bool(blocked or recycle), bool(recycle))


def evaluate_sharded(structure: Structure, params: ArchParams,
                     mappings: Mapping,
                     devices: Optional[Sequence[jax.Device]] = None) -> Stats:
  """Numpy ``Stats`` of a batch of any length ``B``, split over devices.

  The batch is padded to a multiple of the device count and the padding is
  dropped from the result.
  """
  devs = tuple(jax.local_devices() if devices is None else devices)
  n = int(np.shape(mappings.temporal)[0])
  padded = pad_batch(mappings, round_up(n, len(devs)))
  out = make_sharded_evaluator(structure, devs)(params, padded)
  return jax.tree.map(lambda a: np.asarray(a)[:n], out)
