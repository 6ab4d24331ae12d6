"""Timeloop's termination rules, applied to batches as a sequential run
would apply them one mapping at a time.

Timeloop's mapper thread (``src/applications/mapper/mapper-thread.cpp``,
``MapperThread::Run``, NVlabs/timeloop 0fc43fb) checks, before taking each
next mapping:

* ``search_size``: stop once ``search_size`` *legal* mappings were found;
* ``victory_condition``: stop once that many consecutive legal mappings
  did not improve the best (``mappings_since_last_best_update``; illegal
  mappings neither count nor reset it);
* ``timeout``: stop once that many consecutive mappings were illegal
  (reset by a legal one).

0 turns a rule off (for ``timeout`` this follows Timeloop's documentation,
``doc/mapper.md``; the code at 0fc43fb stops at the first illegal mapping
when ``timeout`` is 0, which is not what the tutorials that set it to 0
ask for).  Unless ``penalize_consecutive_bypass_fails`` is set, a mapping
that differs from the one before it only in its bypass choices counts
towards neither ``timeout`` (when illegal for capacity) nor
``victory_condition``.  A mapping refused before evaluation (jaxloop:
more temporal loops than ``max_temporal_loops_in_a_mapping``) always counts
towards ``timeout``.

"Improves" is jaxloop's objective order (lexicographic over the metrics,
exact): Timeloop's ``IsBetter`` treats differences within 0.1 % of a
metric as ties decided by the next metric.

:func:`scan` takes a batch's flags in evaluation order and returns where a
sequential run would have stopped, so results do not depend on the batch
size.
"""
from __future__ import annotations

import dataclasses
from typing import Optional

import numpy as np

# Stop reasons of the rules, in the order Timeloop checks them.
RULE_REASONS = ("search_size", "victory", "timeout")


@dataclasses.dataclass(frozen=True)
class StopRules:
  """Timeloop's termination rules (0: off).

  Attributes:
    victory: consecutive legal mappings that do not improve the best
      (``victory_condition``).
    timeout: consecutive illegal mappings (``timeout``).
    search_size: legal mappings in all (``search_size``).
    penalize_bypass_fails: ``penalize_consecutive_bypass_fails``.
    max_temporal_loops: a mapping with more temporal loops of factor > 1
      (all levels) is illegal (``max_temporal_loops_in_a_mapping``; <= 0:
      no limit).
  """
  victory: int = 0
  timeout: int = 0
  search_size: int = 0
  penalize_bypass_fails: bool = False
  max_temporal_loops: int = 0

  @property
  def can_stop(self) -> bool:
    """Whether a rule ends a search that never ends by itself (``timeout``
    does not: a search may keep finding legal mappings)."""
    return bool(self.victory or self.search_size)


@dataclasses.dataclass
class Counters:
  """The counters of a sequential run: legal mappings, legal mappings since
  the best improved, illegal mappings since the last legal one."""
  legal: int = 0
  since_best: int = 0
  invalid_run: int = 0


def improvements(best: Optional[np.ndarray], keys: np.ndarray,
                 valid: np.ndarray) -> np.ndarray:
  """``bool[B]``: row ``i`` is legal and strictly better (lexicographic
  over the ``[B, M]`` ``keys``) than ``best`` and every legal row before
  it."""
  n = len(keys)
  allk = keys if best is None else np.concatenate([best[None], keys])
  order = np.lexsort(allk.T[::-1])
  sk = allk[order]
  new = np.concatenate([[True], np.any(sk[1:] != sk[:-1], axis=1)])
  rank = np.empty(len(allk), np.int64)
  rank[order] = np.cumsum(new)
  none = np.iinfo(np.int64).max
  head = rank[0] if best is not None else none
  rows = np.where(valid, rank[len(allk) - n:], none)
  before = np.minimum.accumulate(np.concatenate([[head], rows]))[:-1]
  return valid & (rows < before)


def bypass_only(prev: Optional[tuple], fidx: np.ndarray,
                order: np.ndarray, keep: np.ndarray) -> np.ndarray:
  """``bool[B]``: the mapping differs from the one before it (``prev``:
  the last ``(fidx, order, keep)`` of the previous batch, or None) only in
  its bypass choices."""
  n = len(fidx)
  if prev is not None:
    fidx, order, keep = (np.concatenate([p[None], a]) for p, a in
                         zip(prev, (fidx, order, keep)))
  def rows(a):   # row i: a[i + 1] == a[i]
    return np.all(a[1:] == a[:-1], axis=tuple(range(1, a.ndim)))

  out = rows(fidx) & rows(order) & ~rows(keep)
  return out if prev is not None else np.concatenate([[False], out])[:n]


def _running(inc: np.ndarray, reset: np.ndarray, carry: int) -> np.ndarray:
  """A counter after each row: ``+inc[i]``, back to 0 where ``reset[i]``
  (``inc`` is 0 there), starting from ``carry``."""
  cs = np.cumsum(inc.astype(np.int64))
  low = np.iinfo(np.int64).min
  last = np.maximum.accumulate(np.where(reset, cs, low))
  return np.where(last == low, carry + cs, cs - last)


def scan(rules: StopRules, counters: Counters, valid: np.ndarray,
         improved: np.ndarray, only_bypass: np.ndarray,
         refused: np.ndarray) -> tuple[int, str, Counters]:
  """Applies the rules to one batch in order.

  Args:
    rules: the rules.
    counters: the counters before the batch.
    valid: ``bool[B]`` legal rows.
    improved: ``bool[B]`` legal rows that improve the best
      (:func:`improvements`).
    only_bypass: ``bool[B]`` rows that differ from the previous one only in
      bypass (:func:`bypass_only`).
    refused: ``bool[B]`` illegal rows refused before evaluation (they count
      towards ``timeout`` whatever ``only_bypass``).

  Returns:
    ``(count, reason, counters)``: the rows a sequential run evaluates
    (``B`` when no rule fires), the rule that stops it there (``""`` when
    none) and the counters after those rows.
  """
  n = len(valid)
  counted = rules.penalize_bypass_fails | ~only_bypass
  legal = counters.legal + np.cumsum(valid.astype(np.int64))
  since = _running(valid & ~improved & counted, improved,
                   counters.since_best)
  invalid = _running(~valid & (counted | refused), valid,
                     counters.invalid_run)
  fired = {"search_size": legal >= rules.search_size if rules.search_size
           else None,
           "victory": since >= rules.victory if rules.victory else None,
           "timeout": (invalid > 0) & (invalid >= rules.timeout)
           if rules.timeout else None}
  stop, reason = n, ""
  for name in RULE_REASONS:     # the first row a rule fires on; ties: order
    hits = fired[name]
    if hits is not None and hits.any() and (
        not reason or int(np.argmax(hits)) + 1 < stop):
      stop, reason = int(np.argmax(hits)) + 1, name
  if stop == 0:
    return 0, reason, counters
  i = stop - 1
  return stop, reason, Counters(int(legal[i]), int(since[i]),
                                int(invalid[i]))
