"""Tile shapes: extents of each level's tile in operation and data space.

Timeloop's nest puts, for every storage level l (innermost first), the
spatial loops of l (fan-out to the instances below) inside the temporal loops
of l.  The tile held by one instance of level l spans every loop at levels
<= l, so its extent along dim d is ``prod_{l' <= l} T[l', d] * S[l', d]``.

A box of operation-space extents ``E[d]`` projects onto data space s as a box
with extents ``e[s, r] = sum_d P[s, r, d] * (E[d] - 1) + 1`` (Timeloop's
ProjectLowHigh on the box corners); its size is ``prod_r e[s, r]``.
"""
from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from jaxloop.structure import Structure
from jaxloop.types import Array, Mapping


def spatial_factors(m: Mapping) -> Array:
  """``[L, D]`` total spatial factor (X times Y) of each dim at each level."""
  return m.spatial_x * m.spatial_y


def cumulative_extents(m: Mapping) -> Array:
  """``[L + 1, D]``: ``cum[l]`` is the op-space extent of level l-1's tile.

  ``cum[0]`` is a single operation (all ones); ``cum[l + 1]`` is the tile of
  storage level l (all loops at levels <= l, spatial included).
  """
  per_level = m.temporal * spatial_factors(m)
  ones = jnp.ones_like(per_level[:1])
  return jnp.cumprod(jnp.concatenate([ones, per_level], axis=0), axis=0)


def dataspace_extents(structure: Structure, op_extents: Array) -> Array:
  """Data-space box extents of op-space boxes.

  Args:
    structure: static structure (projection ``[S, R, D]``).
    op_extents: ``[..., D]`` op-space extents.

  Returns:
    ``[..., S, R]`` extents along every rank of every data space (padded
    ranks have extent 1).
  """
  proj = jnp.asarray(structure.projection_array(), dtype=op_extents.dtype)
  return jnp.einsum("srd,...d->...sr", proj, op_extents - 1) + 1


def box_size(structure: Structure, op_extents: Array) -> Array:
  """``[..., S]`` number of data points of each data space in the box."""
  return jnp.prod(dataspace_extents(structure, op_extents), axis=-1)


def projection_matrix(structure: Structure, dtype) -> Array:
  """``[S, R, D]`` projection coefficients as a constant of ``dtype``."""
  return jnp.asarray(np.asarray(structure.projection_array()), dtype=dtype)
