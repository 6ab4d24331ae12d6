"""The closed-form model against a literal walk of Timeloop's nest analysis."""
import zlib

import jax
import numpy as np

from jaxloop.mapspace import prime_list
import pytest

from jaxloop.model import access
from jaxloop.spec import types as st
from jaxloop.structure import build_structure
from jaxloop.types import Mapping

from nest_sim import timeloop_counts


def conv1d_problem(C, K, R, P, stride=1):
  dims = ("C", "K", "R", "P")
  ds = (st.DataSpace("Weights", (((1, 0),), ((1, 1),), ((1, 2),))),
        st.DataSpace("Inputs", (((1, 0),), ((1, 2), (stride, 3)))),
        st.DataSpace("Outputs", (((1, 1),), ((1, 3),)), read_write=True))
  return st.Problem("conv1d", dims, (C, K, R, P), ds)


def arch(levels):
  """levels: innermost first list of (name, instances, mesh_x, mesh_y, dummy)."""
  storage = tuple(st.StorageLevel(name=n, cls="dummy_storage" if d else "SRAM",
                                  instances=i, mesh_x=mx, mesh_y=my,
                                  is_dummy=d)
                  for n, i, mx, my, d in levels)
  inner = levels[0]
  comp = st.ArithmeticLevel("mac", "intmac", instances=inner[1],
                            mesh_x=inner[2], mesh_y=inner[3])
  return st.Architecture(storage=storage, arithmetic=comp)




def random_mapping(structure, rng):
  """A random mapping outside the one geometry the model does not cover.

  With X loops partly filling a mesh row and Y loops below, Timeloop's
  row-major neighbour numbering wraps children of different rows into
  neighbours; jaxloop does not model that (documented in access.py).
  """
  while True:
    m = _random_mapping(structure, rng)
    x = np.prod(m.spatial_x, axis=1)
    y = np.prod(m.spatial_y, axis=1)
    partial = (x > 1) & (x < np.asarray(structure.fanout_x)) & (y > 1)
    if not partial.any():
      return m


def _random_mapping(structure, rng):
  L, D, S = structure.num_levels, structure.num_dims, structure.num_dataspaces
  t = np.ones((L, D), np.int64)
  sx = np.ones((L, D), np.int64)
  sy = np.ones((L, D), np.int64)
  for d, b in enumerate(structure.dim_bounds):
    for p in prime_list(b):
      while True:
        l = rng.integers(L)
        kind = rng.integers(3)
        if kind == 0 and not structure.is_dummy[l]:
          t[l, d] *= p
          break
        if kind == 1 and sx[l].prod() * p <= structure.fanout_x[l]:
          sx[l, d] *= p
          break
        if kind == 2 and sy[l].prod() * p <= structure.fanout_y[l]:
          sy[l, d] *= p
          break
  # A dim spread over both X and Y at one level is outside the model's
  # canonical spatial order; keep one axis per dim.
  both = (sx > 1) & (sy > 1)
  sx = np.where(both, sx * sy, sx)
  sy = np.where(both, 1, sy)
  order = np.argsort(rng.random((L, D)), axis=-1).astype(np.int32)
  keep = rng.random((L, S)) < 0.7
  keep[-1] = True
  keep[np.asarray(structure.is_dummy)] = False
  return Mapping(t, sx, sy, order, keep)


def sim_levels(structure, m):
  out = []
  for l in range(structure.num_levels):
    out.append(dict(
        temporal=[(int(d), int(m.temporal[l, d])) for d in m.order[l]],
        spatial_x=[(d, int(m.spatial_x[l, d])) for d in range(structure.num_dims)],
        spatial_y=[(d, int(m.spatial_y[l, d])) for d in range(structure.num_dims)],
        mesh_x=structure.fanout_x[l], mesh_y=structure.fanout_y[l]))
  return out


ARCHS = {
    "3level": [("RF", 4, 4, 1, False), ("GB", 1, 1, 1, False),
               ("DRAM", 1, 1, 1, False)],
    "2d-mesh": [("RF", 8, 4, 2, False), ("GB", 1, 1, 1, False),
                ("DRAM", 1, 1, 1, False)],
    "dummy": [("RF", 6, 6, 1, False), ("inter", 1, 1, 1, True),
              ("GB", 1, 1, 1, False), ("DRAM", 1, 1, 1, False)],
    "compute-fanout": [("inter", 1, 1, 1, True), ("GB", 1, 1, 1, False),
                       ("DRAM", 1, 1, 1, False)],
}


@pytest.mark.parametrize("arch_name", sorted(ARCHS))
@pytest.mark.parametrize("stride", [1, 2])
def test_model_matches_nest_walk(arch_name, stride, seed=0):
  levels = ARCHS[arch_name]
  if arch_name == "compute-fanout":
    levels = [("inter", 1, 4, 1, True)] + levels[1:]
  a = arch(levels)
  if arch_name == "compute-fanout":
    a = st.Architecture(storage=a.storage, arithmetic=st.ArithmeticLevel(
        "mac", "intmac", instances=4, mesh_x=4, mesh_y=1))
  prob = conv1d_problem(4, 4, 3, 6, stride)
  structure = build_structure(st.Spec(problem=prob, arch=a))
  rng = np.random.default_rng(zlib.crc32(f"{arch_name}{stride}{seed}".encode()))
  proj = structure.projection_array()
  fn = jax.jit(lambda mm: access.access_counts(structure, mm))
  bad = []
  for trial in range(25):
    m = random_mapping(structure, rng)
    got = jax.tree.map(np.asarray, fn(m))
    spatial = m.spatial_x * m.spatial_y
    rep = [int(np.prod(spatial[l + 1:])) for l in range(structure.num_levels)]
    for s in range(structure.num_dataspaces):
      want = timeloop_counts(proj[s], sim_levels(structure, m), m.keep[:, s],
                             structure.read_write[s], rep)
      for l, w in enumerate(want):
        for f in ("reads", "fills", "updates"):
          g = float(getattr(got, f)[l, s])
          if abs(g - float(w[f])) > 1e-6:
            bad.append(f"trial {trial} level {l} ds {s} {f}: model {g} "
                       f"walk {w[f]}")
  assert not bad, "\n".join(bad[:20]) + f"\n({len(bad)} mismatches)"
