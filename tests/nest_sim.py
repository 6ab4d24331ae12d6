"""A slow, literal walk of Timeloop's nest analysis, for cross-checking.

This re-enacts, loop by loop, what Timeloop's ``NestAnalysis`` (spring 2024)
does for dense problems without flattening: the recursive delta
computation with temporal extrapolation (iterations #0 and #1, the latter
weighted by n - 1), exact box differences, the reset-on-stride-change rule,
spatial extrapolation by translating element 0's delta, multicast grouping
of equal deltas, and link transfers between mesh neighbours; then the
tiling roll-up (partition sizes, parent access share, masking, peer
accesses, first-read elision).  It is exponential in the number of loops
and only meant for small problems in tests.  jaxloop's model is the closed
form of the same rules; the two must agree exactly.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Optional

import numpy as np

Box = Optional[tuple[tuple[int, int], ...]]   # per rank [lo, hi); None = empty


def box_size(b: Box) -> int:
  if b is None:
    return 0
  return math.prod(max(0, hi - lo) for lo, hi in b)


def box_minus_size(a: Box, b: Box) -> int:
  """|a \\ b| for boxes."""
  if a is None:
    return 0
  if b is None:
    return box_size(a)
  inter = 1
  for (alo, ahi), (blo, bhi) in zip(a, b):
    inter *= max(0, min(ahi, bhi) - max(alo, blo))
  return box_size(a) - inter


def translation(a: Box, b: Box):
  """Translation a -> b (min corners); None when either is empty."""
  if a is None or b is None:
    return None
  return tuple(bl - al for (al, _), (bl, _) in zip(a, b))


@dataclasses.dataclass
class Loop:
  dim: int
  bound: int
  spatial: str   # "", "x" or "y"
  level: int     # storage level (tiling level) it belongs to


@dataclasses.dataclass
class Delta:
  """A delta set: the new box minus the previous one (kept symbolically)."""
  new: Box
  old: Box          # subtracted box, or None for "no subtraction"

  def size(self) -> int:
    return box_minus_size(self.new, self.old)

  def shifted(self, t) -> "Delta":
    def sh(b):
      return None if b is None else tuple(
          (lo + d, hi + d) for (lo, hi), d in zip(b, t))
    return Delta(sh(self.new), sh(self.old))

  def key(self):
    """Canonical description of the point set (for equality tests)."""
    if self.size() == 0:
      return ("empty",)
    # Enumerate points of small sets; fine for tests.
    pts = set()
    ranges = [range(lo, hi) for lo, hi in self.new]
    for p in np.ndindex(*[len(r) for r in ranges]):
      q = tuple(r[i] for r, i in zip(ranges, p))
      if self.old is not None and all(
          lo <= x < hi for x, (lo, hi) in zip(q, self.old)):
        continue
      pts.add(q)
    return frozenset(pts)


class NestSim:
  """Timeloop's nest analysis for one data space.

  Args:
    proj: ``[R, D]`` projection coefficients of the data space.
    levels: per storage level (innermost first) a dict with ``temporal``
      (list of (dim, bound) innermost first), ``spatial_x`` and
      ``spatial_y`` (lists of (dim, bound), innermost first), and
      ``mesh_x`` (physical fan-out along X of that level).
  """

  def __init__(self, proj, levels):
    self.proj = np.asarray(proj)
    self.D = self.proj.shape[1]
    self.loops: list[Loop] = []
    self.boundary: list[bool] = []
    self.level_of: list[int] = []
    for l, lv in enumerate(levels):
      spatial = ([Loop(d, n, "x", l) for d, n in lv["spatial_x"] if n > 1]
                 + [Loop(d, n, "y", l) for d, n in lv["spatial_y"] if n > 1])
      temporal = [Loop(d, n, "", l) for d, n in lv["temporal"] if n > 1]
      if not temporal:
        temporal = [Loop(self.D - 1, 1, "", l)]
      for lp in spatial + temporal:
        self.loops.append(lp)
        self.boundary.append(False)
      self.boundary[-1] = True
    self.levels = levels
    n = len(self.loops)
    # vector strides: per loop, op-space step of one iteration
    self.stride = []
    scale = [1] * self.D
    self.mold_high = []
    for lp in self.loops:
      self.stride.append(scale[lp.dim])
      scale = list(scale)
      scale[lp.dim] *= lp.bound
      self.mold_high.append(tuple(s - 1 for s in scale))
    self.master = [lp.spatial != "" and (i == n - 1 or self.loops[i + 1].spatial == "")
                   for i, lp in enumerate(self.loops)]
    self.transform = [0] * self.D
    self.state = {}          # (loop index, space stamp) -> dict
    self.accesses = {}       # (loop index, stamp) -> {(mcast, scatter): acc}
    self.link = {}           # (loop index, stamp) -> link transfers
    self.max_size = {}
    self.epochs = 1

  # -- geometry -------------------------------------------------------------
  def working_set(self, i) -> Box:
    lo = np.array(self.transform)
    hi = lo + np.array(self.mold_high[i])
    out = []
    for r in range(self.proj.shape[0]):
      c = self.proj[r]
      out.append((int(c @ lo), int(c @ hi) + 1))
    return tuple(out)

  # -- temporal -------------------------------------------------------------
  def compute_deltas(self, i, stamp) -> Delta:
    lp = self.loops[i]
    key = (i, stamp)
    if lp.spatial:
      self.spatial_working_set(i, stamp)
    else:
      self.temporal_working_set(i, stamp)
    ws = self.working_set(i)
    if self.boundary[i] or self.master[i]:
      self.max_size[key] = max(self.max_size.get(key, 0), box_size(ws))
    st = self.state.setdefault(key, {"prev": None, "trans": None})
    prev, trans = st["prev"], st["trans"]
    t = translation(prev, ws) if prev is not None else None
    if trans is None:
      delta = Delta(ws, prev)
      st["prev"], st["trans"] = ws, t
    elif t == trans:
      delta = Delta(ws, prev)
      st["prev"] = ws
    else:
      delta = Delta(ws, None)
      st["prev"], st["trans"] = ws, None
    return delta

  def _add(self, i, stamp, mcast, scatter, amount):
    acc = self.accesses.setdefault((i, stamp), {})
    acc[(mcast, scatter)] = acc.get((mcast, scatter), 0) + amount

  def temporal_working_set(self, i, stamp):
    lp = self.loops[i]
    n = lp.bound
    if i == 0:
      self._add(i, stamp, 1, 1, n * self.epochs)
      return
    deltas = []
    saved = self.transform[lp.dim]
    # iteration #0
    d0 = self.compute_deltas(i - 1, stamp)
    deltas.append((d0.size(), 1))
    self.transform[lp.dim] += self.stride[i]
    if n >= 2:
      saved_epochs = self.epochs
      self.epochs *= n - 1
      d1 = self.compute_deltas(i - 1, stamp)
      self.epochs = saved_epochs
      deltas.append((d1.size(), n - 1))
    self.transform[lp.dim] = saved
    if self.boundary[i - 1]:
      total = sum(s * w for s, w in deltas)
      self._add(i, stamp, 1, 1, total * self.epochs)

  # -- spatial --------------------------------------------------------------
  def spatial_working_set(self, i, stamp):
    # Collect the spatial loops of this master (i down to first non-spatial).
    group = [i]
    j = i - 1
    while j >= 0 and self.loops[j].spatial:
      group.append(j)
      j -= 1
    group = group[::-1]          # innermost first
    inner = group[0] - 1         # next temporal loop (or -1 for compute)
    bounds = [self.loops[g].bound for g in group]
    nelem = math.prod(bounds)
    deltas = {}
    if inner < 0:
      # children are compute units: each gets its operation point
      for e in range(nelem):
        idx = self._unravel(e, bounds)
        saved = list(self.transform)
        for g, k in zip(group, idx):
          self.transform[self.loops[g].dim] += k * self.stride[g]
        p = self.working_set_point()
        self.transform = saved
        deltas[e] = Delta(p, None)
    else:
      saved = list(self.transform)
      d0 = self.compute_deltas(inner, stamp + (0,))
      # translation of one step of each spatial loop, at element 0
      base = self.working_set(inner)
      trans = []
      for g in group:
        self.transform[self.loops[g].dim] += self.stride[g]
        trans.append(translation(base, self.working_set(inner)))
        self.transform[self.loops[g].dim] -= self.stride[g]
      self.transform = saved
      for e in range(nelem):
        idx = self._unravel(e, bounds)
        t = [sum(k * tr[r] for k, tr in zip(idx, trans))
             for r in range(self.proj.shape[0])]
        deltas[e] = d0.shifted(t)
    keys = {e: d.key() for e, d in deltas.items()}
    lv = self.levels[self.loops[i].level]
    h_size = max(lv.get("mesh_x", 1), math.prod(
        self.loops[g].bound for g in group if self.loops[g].spatial == "x"))
    v_size = max(lv.get("mesh_y", 1), math.prod(
        self.loops[g].bound for g in group if self.loops[g].spatial == "y"))
    without = self._multicast(deltas, keys, set(deltas))
    st = self.state.setdefault((i, stamp, "link"), {"prev": None})
    prev = st["prev"]
    use_link, matched = False, set()
    if prev is not None:
      for e in deltas:
        if keys[e] == ("empty",):
          continue
        h, v = e % h_size, e // h_size
        nbrs = []
        if h > 0: nbrs.append(e - 1)
        if h < h_size - 1: nbrs.append(e + 1)
        if v > 0: nbrs.append(e - h_size)
        if v < v_size - 1: nbrs.append(e + h_size)
        if any(nb in prev and prev[nb] == keys[e] for nb in nbrs):
          matched.add(e)
      if matched:
        with_link = self._multicast(deltas, keys, set(deltas) - matched)
        if sum(a for a in with_link.values()) < sum(a for a in without.values()):
          use_link = True
    st["prev"] = keys
    chosen = self._multicast(deltas, keys, set(deltas) - matched) if use_link \
        else without
    for (mc, sc), a in chosen.items():
      self._add(i, stamp, mc, sc, a)
    if use_link:
      lt = sum(deltas[e].size() for e in matched) * self.epochs
      self.link[(i, stamp)] = self.link.get((i, stamp), 0) + lt

  def working_set_point(self) -> Box:
    lo = np.array(self.transform)
    return tuple((int(c @ lo), int(c @ lo) + 1) for c in self.proj)

  def _multicast(self, deltas, keys, members):
    groups = {}
    for e in sorted(members):
      groups.setdefault(keys[e], []).append(e)
    out = {}
    for k, es in groups.items():
      size = deltas[es[0]].size()
      if size == 0:
        continue
      key = (len(es),)
      out[key] = out.get(key, 0) + size * self.epochs
    # scatter factor is the number of groups per multicast factor
    res = {}
    for (mc,), a in out.items():
      sc = sum(1 for k, es in groups.items() if len(es) == mc
               and deltas[es[0]].size() > 0)
      res[(mc, sc)] = a
    return res

  @staticmethod
  def _unravel(e, bounds):
    idx = []
    for b in bounds:
      idx.append(e % b)
      e //= b
    return idx

  # -- run --------------------------------------------------------------------
  def run(self):
    top = len(self.loops) - 1
    self.compute_deltas(top, ())
    return self

  def level_stats(self):
    """Per storage level: size, access buckets, link transfers, fanout."""
    nlev = len(self.levels)
    out = []
    for l in range(nlev):
      idx = [k for k, lp in enumerate(self.loops) if lp.level == l]
      # Non-master spatial loops are not reported (CollectWorkingSets).
      valid = [k for k in idx if not self.loops[k].spatial or self.master[k]]
      inner, outer = valid[0], idx[-1]
      def avg(table, i):
        vals = [v for (k, *_), v in table.items() if k == i]
        return vals
      acc_entries = [v for (k, s), v in self.accesses.items() if k == inner]
      buckets = {}
      for v in acc_entries:
        for kk, a in v.items():
          buckets[kk] = buckets.get(kk, 0) + a
      n_inst = max(1, len(acc_entries))
      buckets = {kk: a / n_inst for kk, a in buckets.items()}
      links = [v for (k, s), v in self.link.items() if k == inner]
      lt = sum(links) / n_inst if links else 0.0
      sizes = [v for (k, s), v in self.max_size.items() if k == outer]
      size = sum(sizes) / max(1, len(sizes))
      msizes = [v for (k, s), v in self.max_size.items() if k == inner
                and self.master[inner]]
      msize = sum(msizes) / max(1, len(msizes)) if msizes else None
      fanout = math.prod(self.loops[k].bound for k in idx
                         if self.loops[k].spatial)
      out.append(dict(size=size, buckets=buckets, link=lt, fanout=fanout,
                      master_size=msize))
    return out


def timeloop_counts(proj, levels, keep, read_write, replication):
  """Reads/fills/updates per level for one data space (tiling.cpp rules).

  Args:
    replication: per level, utilized instances of that level.
  """
  sim = NestSim(proj, levels).run()
  tiles = sim.level_stats()
  L = len(tiles)
  for t in tiles:
    t["content"] = sum(t["buckets"].values())
    t["peer_acc"] = t["peer_fill"] = 0.0
  # partition sizes
  part = [0] * L
  part[L - 1] = tiles[L - 1]["size"]
  for c in range(L - 2, -1, -1):
    denom = tiles[c + 1]["master_size"] or tiles[c]["size"]
    part[c] = part[c + 1] * tiles[c]["size"] // denom
  # parent access share
  pas = [0.0] * L
  for c in range(L - 1):
    o = tiles[c + 1]
    pas[c] = sum(a * mc for (mc, _), a in o["buckets"].items()) / o["fanout"]
  # mask
  size = [t["size"] for t in tiles]
  for c in range(L):
    if keep[c]:
      continue
    if c == L - 1:
      size[c] = 0
      break
    o = c + 1
    weighted = sum(a * mc for (mc, _), a in tiles[o]["buckets"].items())
    factor = tiles[c]["content"] * tiles[o]["fanout"] / weighted
    tiles[o]["buckets"] = {k: a * factor for k, a in tiles[o]["buckets"].items()}
    tiles[o]["link"] = 0
    tiles[o]["content"] = sum(tiles[o]["buckets"].values())
    size[c] = 0
  kept = [c for c in range(L) if keep[c]]
  if kept:
    pas[kept[-1]] = 0.0
  for c in range(L - 1, 0, -1):
    if tiles[c]["link"] and size[c - 1] > 0:
      per = tiles[c]["link"] / replication[c - 1]
      tiles[c - 1]["peer_acc"] += per
      tiles[c - 1]["peer_fill"] += per
  res = []
  for c in range(L):
    if not keep[c]:
      res.append(dict(reads=0, fills=0, updates=0, size=0))
      continue
    t = tiles[c]
    if read_write:
      outermost = c == kept[-1]
      res.append(dict(
          updates=round(t["content"]),
          reads=round(t["content"] + t["peer_acc"] - part[c]),
          fills=round(pas[c] + t["peer_fill"]) if outermost
          else round(pas[c] + t["peer_fill"] - part[c]),
          size=size[c]))
    else:
      res.append(dict(reads=round(t["content"] + t["peer_acc"]),
                      fills=pas[c] + t["peer_fill"], updates=0, size=size[c]))
  return res
