"""The columns of a dataset file (:mod:`jaxloop.research.dataset`).

Every column is a flat scalar column (no nested lists: Parquet writes
those element by element with repetition levels, about 4x slower), and a
file stores only the mapping slots its mapspace lets vary; the values of
the others (storage-less levels' factors, spatial factors of levels
without fan-out, fixed loop positions and keep bits, bounds fixed by the
constraints) are in the file's metadata (:class:`Layout`).

Column names (``l`` level innermost first, ``d`` dim, ``k`` loop position
innermost first, ``s`` data space, all indices in the file's structure):

* ``temporal/l{l}/d{d}``, ``spatial_x/l{l}/d{d}``, ``spatial_y/l{l}/d{d}``
  (int32): the mapping's factors;
* ``order/l{l}/k{k}`` (int8): the dim of the k-th loop of level l
  (Timeloop's permutation);
* ``keep/l{l}/s{s}`` (bool): keep (True) or bypass;
* ``level_energy_pj/l{l}``, ``level_reads/l{l}``, ``level_fills/l{l}``,
  ``level_updates/l{l}`` (float64) for every level: energy of all
  instances, and per-instance accesses summed over data spaces (exact
  integers).
"""
from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import numpy as np
import pyarrow as pa

from jaxloop.mapspace import Mapspace
from jaxloop.types import Mapping

FACTOR_FIELDS = ("temporal", "spatial_x", "spatial_y")
LEVEL_STATS = ("level_energy_pj", "level_reads", "level_fills",
               "level_updates")
TOTALS = (("valid", pa.bool_()), ("energy_pj", pa.float64()),
          ("cycles", pa.int64()), ("edp", pa.float64()))


@dataclasses.dataclass(frozen=True)
class Layout:
  """Which mapping slots a file stores, and the values of the others.

  Attributes:
    levels, dims, dataspaces: L, D, S of the structure.
    factor_slots: ``(field, l, d)`` factor slots stored (field 0 temporal,
      1 spatial X, 2 spatial Y).
    order_slots: ``(l, k)`` loop positions stored.
    keep_slots: ``(l, s)`` keep bits stored.
    factors: ``[3][L][D]`` values of the slots not stored.
    order: ``[L][D]`` values of the positions not stored.
    keep: ``[L][S]`` values of the bits not stored.
  """
  levels: int
  dims: int
  dataspaces: int
  factor_slots: tuple
  order_slots: tuple
  keep_slots: tuple
  factors: tuple
  order: tuple
  keep: tuple

  def mapping_names(self) -> list[str]:
    """The mapping's column names, in stored order."""
    return ([f"{FACTOR_FIELDS[f]}/l{l}/d{d}" for f, l, d in
             self.factor_slots]
            + [f"order/l{l}/k{k}" for l, k in self.order_slots]
            + [f"keep/l{l}/s{s}" for l, s in self.keep_slots])

  def level_names(self) -> list[str]:
    return [f"{n}/l{l}" for n in LEVEL_STATS for l in range(self.levels)]

  def to_json(self) -> dict:
    return {k: _lists(v) for k, v in dataclasses.asdict(self).items()}

  @classmethod
  def from_json(cls, d: dict) -> "Layout":
    return cls(**{k: _tuples(v) for k, v in d.items()})


def _lists(v):
  return [_lists(x) for x in v] if isinstance(v, (tuple, list)) else v


def _tuples(v):
  return tuple(_tuples(x) for x in v) if isinstance(v, list) else v


def layout_of(ms: Mapspace) -> Layout:
  """The :class:`Layout` of ``ms``: factor slots whose value differs
  between rows of some dim's factor table, loop positions after the fixed
  prefix of storage levels with two or more free dims, free keep bits."""
  s = ms.structure
  L, D = s.num_levels, s.num_dims
  tables = [ds.table.reshape(-1, 3, L) for ds in ms.dims]     # [N, 3, L]
  factor_slots = tuple(
      (f, l, d) for f in range(3) for l in range(L) for d in range(D)
      if tables[d][:, f, l].min() != tables[d][:, f, l].max())
  factors = tuple(tuple(tuple(int(tables[d][0, f, l]) for d in range(D))
                        for l in range(L)) for f in range(3))
  order, order_slots = [], []
  for l in range(L):
    pre, free = ms.prefix[l], ms.free_order[l]
    order.append(tuple(range(D)) if s.is_dummy[l] else tuple(pre) +
                 tuple(free))
    if not s.is_dummy[l] and len(free) > 1:
      order_slots += [(l, k) for k in range(len(pre), D)]
  keep = tuple(tuple(bool(ms.keep_rule[l, j] == 1)
                     for j in range(s.num_dataspaces)) for l in range(L))
  return Layout(levels=L, dims=D, dataspaces=s.num_dataspaces,
                factor_slots=factor_slots, order_slots=tuple(order_slots),
                keep_slots=tuple((int(l), int(j)) for l, j in ms.free_keep),
                factors=factors, order=tuple(order), keep=keep)


def schema(layout: Layout, metadata: dict[bytes, bytes]) -> pa.Schema:
  """The file's Arrow schema: ``row`` (int64 position in the sampled
  stream), ``arch`` and ``layer`` (dictionary strings), the mapping
  columns, the totals (``valid``, ``energy_pj``, ``cycles``, ``edp`` in
  J*cycles) and the per-level statistics."""
  names = pa.dictionary(pa.int8(), pa.string())
  kinds = ([pa.int32()] * len(layout.factor_slots)
           + [pa.int8()] * len(layout.order_slots)
           + [pa.bool_()] * len(layout.keep_slots))
  cols = [("row", pa.int64()), ("arch", names), ("layer", names)]
  cols += list(zip(layout.mapping_names(), kinds)) + list(TOTALS)
  cols += [(n, pa.float64()) for n in layout.level_names()]
  return pa.schema(cols, metadata=metadata)


def device_columns(layout: Layout, mapping: Mapping) -> dict:
  """The stored slots of a blocked mapping chunk (traceable): ``factors
  i32[Vf, nb, C]``, ``order i8[Vo, nb, C]``, ``keep bool[Vk, nb, C]``
  (each stored column a contiguous row once reshaped to ``[V, nb * C]``).
  """
  fields = jnp.stack([mapping.temporal, mapping.spatial_x,
                      mapping.spatial_y]).astype(jnp.int32)  # [3,nb,L,D,C]
  f = np.asarray(layout.factor_slots, np.int64).reshape(-1, 3).T
  o = np.asarray(layout.order_slots, np.int64).reshape(-1, 2).T
  k = np.asarray(layout.keep_slots, np.int64).reshape(-1, 2).T
  # Advanced indices split by a slice come first: [V, nb, C].
  return {"factors": fields[f[0], :, f[1], f[2]],
          "order": jnp.moveaxis(mapping.order[:, o[0], o[1]], 1, 0).astype(
              jnp.int8),
          "keep": jnp.moveaxis(mapping.keep[:, k[0], k[1]], 1, 0)}


def device_stats(stats: dict) -> dict:
  """Blocked row statistics (totals ``[nb, C]``, per level ``[nb, L, C]``)
  with the per-level ones as ``[L, nb, C]`` (traceable)."""
  return {n: (jnp.moveaxis(a, 1, 0) if a.ndim == 3 else a)
          for n, a in stats.items()}


def record_batch(sch: pa.Schema, layout: Layout, cols: dict, stats: dict,
                 first_row: int, rows: int, arch: str,
                 layer: str) -> pa.RecordBatch:
  """One chunk as a record batch of ``sch``, from the host copies of
  :func:`device_columns` and :func:`device_stats` (``[V, nb, C]`` and
  ``[L, nb, C]``/``[nb, C]``); rows past ``rows`` (padding) dropped.
  Columns are zero-copy views of those arrays."""
  from jaxloop.types import edp
  flat = lambda a: (a.reshape(a.shape[0], a.shape[1] * a.shape[2])[:, :rows]
                    if a.ndim == 3 else a.reshape(-1)[:rows])
  names = lambda n: pa.DictionaryArray.from_arrays(
      np.zeros(rows, np.int8), pa.array([n]))
  arrays = [pa.array(np.arange(first_row, first_row + rows, dtype=np.int64)),
            names(arch), names(layer)]
  for part in ("factors", "order", "keep"):
    arrays += [pa.array(r) for r in flat(cols[part])]
  energy, cycles = flat(stats["energy_pj"]), flat(stats["cycles"])
  arrays += [pa.array(flat(stats["valid"])), pa.array(energy),
             pa.array(cycles.astype(np.int64)), pa.array(edp(energy, cycles))]
  for n in LEVEL_STATS:
    arrays += [pa.array(r) for r in flat(stats[n])]
  return pa.RecordBatch.from_arrays(arrays, schema=sch)


def table_mapping(table: pa.Table, layout: Layout) -> Mapping:
  """The rows' mappings (numpy ``Mapping`` ``[B, L, D]``/``[B, L, S]``):
  the layout's fixed values with the stored columns filled in."""
  B = table.num_rows
  col = lambda n: table.column(n).to_numpy()
  factors = np.broadcast_to(np.asarray(layout.factors, np.int32)[:, None],
                            (3, B, layout.levels, layout.dims)).copy()
  for (f, l, d), n in zip(layout.factor_slots, layout.mapping_names()):
    factors[f, :, l, d] = col(n)
  order = np.broadcast_to(np.asarray(layout.order, np.int32),
                          (B, layout.levels, layout.dims)).copy()
  for l, k in layout.order_slots:
    order[:, l, k] = col(f"order/l{l}/k{k}")
  keep = np.broadcast_to(np.asarray(layout.keep, bool),
                         (B, layout.levels, layout.dataspaces)).copy()
  for l, s in layout.keep_slots:
    keep[:, l, s] = table.column(f"keep/l{l}/s{s}").to_numpy(
        zero_copy_only=False)
  return Mapping(temporal=factors[0], spatial_x=factors[1],
                 spatial_y=factors[2], order=order, keep=keep)


def level_stats(table: pa.Table, layout: Layout, name: str) -> np.ndarray:
  """``f64[B, L]`` of a per-level statistic (``level_energy_pj`` ...)."""
  return np.stack([table.column(f"{name}/l{l}").to_numpy()
                   for l in range(layout.levels)], axis=1)
