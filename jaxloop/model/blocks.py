"""The blocked batch layout: the model's fast path for large batches.

``evaluate_batch`` takes and returns batch-first arrays (``[B, L, D]`` in,
``[B, L, S]`` out), but the model runs batch-last (``[L, D, C]``, see
:mod:`jaxloop.model.tiling`), so each block of C mappings is transposed on
the way in and every statistic on the way out.  XLA:CPU moves such
transposes element by element.

In the blocked layout a batch of B mappings is ``nb = ceil(B / C)`` blocks
of C *lanes*: every leaf ``[B, *shape]`` is held as ``[nb, *shape, C]``
(mapping b is block ``b // C``, lane ``b % C``).  A block is exactly what
:func:`jaxloop.model.evaluate.evaluate_last` takes and returns, so
:func:`evaluate_blocks` reads each block and writes its statistics in
place, with no transpose at all (the same model; figures in
``docs/performance.md``).  The on-device stream draws its mappings in this
layout; :func:`to_blocks` and :func:`from_blocks` convert from and
to batch-first arrays, and :func:`take` picks rows.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxloop.model.evaluate import default_block, evaluate_last, loop_buffers
from jaxloop.precision import require_x64
from jaxloop.structure import Structure
from jaxloop.types import ArchParams, Mapping, Stats


def _xp(a):
  """numpy for numpy inputs (host-side conversion), jax.numpy otherwise."""
  return np if isinstance(a, (np.ndarray, np.generic)) else jnp


def num_blocks(batch: int, lanes: int, multiple: int = 1) -> int:
  """Blocks of ``lanes`` needed for ``batch`` rows (at least one), rounded
  up to a multiple of ``multiple``."""
  nb = max(1, -(-int(batch) // int(lanes)))
  return -(-nb // int(multiple)) * int(multiple)


def pad_rows(tree, size: int):
  """Pads every leaf's leading axis to ``size`` rows by repeating its last
  row (real mappings, so padded rows evaluate like any other; drop them
  from the result).  numpy stays numpy, jax stays jax (traceable).

  Args:
    tree: pytree of arrays ``[B, ...]`` with ``1 <= B``.
    size: the padded length (no-op when ``size <= B``).
  """
  def one(a):
    xp = _xp(a)
    a = xp.asarray(a)
    extra = int(size) - a.shape[0]
    if extra <= 0:
      return a
    return xp.concatenate([a, xp.repeat(a[-1:], extra, axis=0)])

  return jax.tree.map(one, tree)


def pad_blocks(tree, num: int):
  """Blocked leaves ``[nb, ...]`` padded to ``num`` blocks (copies of the
  last block)."""
  return pad_rows(tree, num)


def to_blocks(tree, lanes: int | None = None, multiple: int = 1):
  """Batch-first leaves ``[B, *shape]`` -> blocked ``[nb, *shape, C]``.

  A batch that does not fill its last block is padded by repeating its
  last row (:func:`pad_rows`; drop the padding with :func:`from_blocks`).
  numpy leaves stay numpy (a host-side conversion), jax leaves give jax
  arrays (traceable).

  Args:
    tree: pytree (e.g. a ``Mapping``) of arrays with a leading batch axis.
    lanes: C, mappings per block (default :func:`default_lanes`).
    multiple: the block count is rounded up to a multiple of this (e.g.
      the device count, to split the blocks evenly over devices).
  """
  lanes = default_lanes() if lanes is None else int(lanes)
  batch = jax.tree.leaves(tree)[0].shape[0]
  nb = num_blocks(batch, lanes, multiple)

  def one(a):
    xp = _xp(a)
    a = a.reshape((nb, lanes) + a.shape[1:])
    return xp.moveaxis(a, 1, -1)

  return jax.tree.map(one, pad_rows(tree, nb * lanes))


def from_blocks(tree, batch: int | None = None):
  """Blocked leaves ``[nb, *shape, C]`` -> batch-first ``[B, *shape]``.

  Args:
    tree: pytree of blocked arrays (e.g. ``Stats`` from
      :func:`evaluate_blocks`).
    batch: B, rows to keep (default all ``nb * C``; padding is dropped).
  """
  def one(a):
    xp = _xp(a)
    a = xp.moveaxis(xp.asarray(a), -1, 1)
    a = a.reshape((-1,) + a.shape[2:])
    return a if batch is None else a[:batch]

  return jax.tree.map(one, tree)


def flat(a):
  """A blocked per-mapping scalar ``[nb, C]`` as ``[nb * C]`` (row order)."""
  return a.reshape(-1)


def take(tree, index):
  """Rows ``index`` (``[K]`` batch positions) of a blocked pytree, as
  batch-first ``[K, *shape]`` leaves (traceable)."""
  def one(a):
    lanes = a.shape[-1]
    # Advanced indices split by ``...`` put the K axis first: [K, *shape].
    return a[index // lanes, ..., index % lanes]

  return jax.tree.map(one, tree)


def default_lanes() -> int:
  """Mappings per block: :func:`jaxloop.model.evaluate.default_block`."""
  return default_block()


def evaluate_blocks(structure: Structure, params: ArchParams,
                    blocks: Mapping, pick=None, out=None,
                    bounds=None) -> Stats:
  """Statistics of blocked mappings, blocked (traceable).

  Args:
    structure: static structure.
    params: architecture numbers, shared by all mappings.
    blocks: ``Mapping`` with ``[nb, L, D, C]`` / ``[nb, L, S, C]`` leaves
      (:func:`to_blocks`).
    pick: optional ``fn(Stats) -> pytree`` of what to keep of each block
      (e.g. the totals a reduction needs); the rest is never written.
    out: optional result of an earlier call of the same shapes, whose
      buffers are overwritten (under ``jit`` with ``out`` donated, see
      :func:`make_block_evaluator`'s ``recycle``): no fresh output to
      allocate and zero.  Its values are not read.
    bounds: ``[D]`` dim bounds as data for a structure shared by several
      problems (see :func:`jaxloop.model.evaluate.evaluate_last`).

  Returns:
    ``Stats`` (or ``pick``'s pytree) with ``[nb, ..., C]`` leaves
    (``[nb, L, S, C]`` counts, ``[nb, C]`` totals): block k is
    ``evaluate_last`` of block k, written in place by a loop over the
    blocks.
  """
  require_x64()
  nb = jax.tree.leaves(blocks)[0].shape[0]
  pick = (lambda stats: stats) if pick is None else pick
  one = lambda m: pick(evaluate_last(structure, params, m, bounds))
  if nb == 1 and out is None:
    return jax.tree.map(lambda x: x[None], one(jax.tree.map(
        lambda x: x[0], blocks)))
  def body(k, out):
    stats = one(jax.tree.map(lambda x: x[k], blocks))
    return jax.tree.map(
        lambda o, r: jax.lax.dynamic_update_index_in_dim(o, r, k, 0),
        out, stats)

  if out is None:
    shapes = jax.eval_shape(one, jax.tree.map(lambda x: x[0], blocks))
    out = loop_buffers(jax.tree.map(
        lambda a: jax.ShapeDtypeStruct((nb,) + a.shape, a.dtype), shapes),
        blocks)
  return jax.lax.fori_loop(0, nb, body, out)
