"""Technology nodes and scaling factors (all relative to 45 nm).

The primitive models in :mod:`jaxloop.estimate.primitives` are stated at
45 nm.  Other nodes are reached with these factors:

* logic (adders, multipliers, registers, comparators):
  :func:`logic_energy_factor`, the energy per switching event of Stillmaker
  & Baas's per-node fits ("Scaling equations for the accurate prediction of
  CMOS device performance from 180 nm to 7 nm", Integration 58, 2017),
  evaluated at one common supply voltage (0.8 V), which is also how
  Accelergy scales its logic tables (its 32 nm tables are 0.659 times its
  45 nm ones);
* SRAM: :func:`sram_energy_factor`, :func:`sram_leak_factor`,
  :func:`sram_area_factor`, CACTI 7's own technology scaling (ratios over a
  sweep of sizes, :mod:`jaxloop.estimate.calibration`); below 22 nm energy
  follows the square root and area the SRAM bit cell (next item);
* :func:`energy_factor` (generic dynamic energy, ``E ~ C V^2`` with switched
  capacitance proportional to the feature size down to 22 nm and to its
  square root below, where Stillmaker & Baas show classical scaling
  overestimating the gains, and the nominal supply voltages of the
  predictive PTM/ITRS device models tabulated in that paper) and
  :func:`wire_energy_factor` (``V^2`` only);
* :func:`area_factor` (logic and flip-flop area): published high-density 6T
  SRAM bit-cell areas (Intel 90/65/45/32/22/14/10 nm, TSMC 40/28/16/7 nm
  process papers at IEDM/ISSCC/VLSI), which fold in the slow-down of area
  scaling at FinFET nodes.

Tables are interpolated linearly in log-log space (smooth between nodes,
differentiable almost everywhere).
"""
from __future__ import annotations

import math
import re

import jax.numpy as jnp

REFERENCE_NM = 45.0

# Nominal supply voltage (V) per node (PTM/ITRS models, Stillmaker & Baas
# 2017, Table 1).
_VDD = ((7.0, 0.70), (10.0, 0.75), (14.0, 0.80), (22.0, 0.80), (32.0, 0.90),
        (45.0, 1.00), (65.0, 1.10), (90.0, 1.20), (130.0, 1.30),
        (180.0, 1.80))

# High-density 6T SRAM bit cell (um^2) per node: Intel 90 nm 1.0, 65 nm
# 0.57, 45 nm 0.346, 32 nm 0.171, 22 nm 0.092, 14 nm 0.0588, 10 nm 0.0312;
# TSMC 40 nm 0.242, 28 nm 0.127, 16 nm 0.07, 7 nm 0.027.
_BITCELL_UM2 = ((7.0, 0.027), (10.0, 0.0312), (14.0, 0.0588), (16.0, 0.070),
                (22.0, 0.092), (28.0, 0.127), (32.0, 0.171), (40.0, 0.242),
                (45.0, 0.346), (65.0, 0.57), (90.0, 1.0))

SUPPORTED_NM = (7, 10, 14, 16, 22, 28, 32, 40, 45, 65, 90)

# Energy per switching event relative to 45 nm at a common 0.8 V supply:
# Stillmaker & Baas 2017's per-node energy fits (quadratic in Vdd).
_LOGIC_ENERGY = ((7.0, 0.094), (10.0, 0.118), (14.0, 0.139), (16.0, 0.174),
                 (20.0, 0.221), (32.0, 0.659), (45.0, 1.0), (65.0, 1.241),
                 (90.0, 1.897), (130.0, 3.068))


def parse_node(value: object) -> float | None:
  """Feature size in nm from ``45nm``, ``"45 nm"``, ``45`` or ``0.045um``.

  Returns None for values that name no node (``SET ME``, ``-1``, empty).
  """
  if isinstance(value, bool) or value is None:
    return None
  if isinstance(value, (int, float)):
    return float(value) if value > 0 else None
  m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*(nm|um)?\s*", str(value).lower())
  if not m:
    return None
  nm = float(m.group(1)) * (1000.0 if m.group(2) == "um" else 1.0)
  return nm if nm > 0 else None


def _loglog(table, node):
  xs = jnp.log(jnp.asarray([x for x, _ in table]))
  ys = jnp.log(jnp.asarray([y for _, y in table]))
  x = jnp.log(jnp.asarray(node, dtype=xs.dtype))
  # Extrapolate with the end segments' slopes.
  lo = ys[0] + (x - xs[0]) * (ys[1] - ys[0]) / (xs[1] - xs[0])
  hi = ys[-1] + (x - xs[-1]) * (ys[-1] - ys[-2]) / (xs[-1] - xs[-2])
  mid = jnp.interp(x, xs, ys)
  return jnp.exp(jnp.where(x < xs[0], lo, jnp.where(x > xs[-1], hi, mid)))


def vdd(node):
  """Nominal supply voltage (V) at ``node`` nm."""
  return _loglog(_VDD, node)


def _capacitance(node):
  node = jnp.asarray(node, dtype=jnp.float64)
  knee = 22.0
  classical = node / REFERENCE_NM
  finfet = (knee / REFERENCE_NM) * jnp.sqrt(node / knee)
  return jnp.where(node >= knee, classical, finfet)


def energy_factor(node):
  """Dynamic energy at ``node`` relative to 45 nm (``C V^2``)."""
  return _capacitance(node) * (vdd(node) / vdd(REFERENCE_NM)) ** 2


def wire_energy_factor(node):
  """Wire energy per mm relative to 45 nm: only ``V^2`` (capacitance per
  unit length stays about 0.2 pF/mm across nodes)."""
  return (vdd(node) / vdd(REFERENCE_NM)) ** 2


def area_factor(node):
  """Area at ``node`` relative to 45 nm (SRAM bit-cell ratio)."""
  return _loglog(_BITCELL_UM2, node) / _loglog(_BITCELL_UM2, REFERENCE_NM)


def bitcell_um2(node):
  """High-density 6T SRAM bit-cell area (um^2) at ``node``."""
  return _loglog(_BITCELL_UM2, node)


def logic_energy_factor(node):
  """Dynamic energy of logic at ``node`` relative to 45 nm (switched
  capacitance at a fixed supply, Stillmaker & Baas 2017)."""
  return _loglog(_LOGIC_ENERGY, node)


def _sram_column(i):
  from jaxloop.estimate.calibration import SRAM_NODES
  return tuple((row[0], row[i]) for row in SRAM_NODES)


def sram_energy_factor(node):
  """SRAM dynamic energy at ``node`` relative to 45 nm (CACTI 7's scaling
  from 22 to 90 nm; below 22 nm the square root of the node, as FinFET
  capacitance per Stillmaker & Baas)."""
  node = jnp.asarray(node, dtype=jnp.float64)
  table = _sram_column(1)
  low = _loglog(table, 22.0) * jnp.sqrt(node / 22.0)
  return jnp.where(node < 22.0, low, _loglog(table, node))


def sram_leak_factor(node):
  """SRAM standby leakage at ``node`` relative to 45 nm (CACTI 7, low
  standby power devices; below 22 nm as at 22 nm)."""
  node = jnp.asarray(node, dtype=jnp.float64)
  return _loglog(_sram_column(2), jnp.maximum(node, 22.0))


def sram_area_factor(node):
  """SRAM area at ``node`` relative to 45 nm (CACTI 7; below 22 nm the
  published bit-cell ratio)."""
  node = jnp.asarray(node, dtype=jnp.float64)
  table = _sram_column(3)
  low = _loglog(table, 22.0) * bitcell_um2(node) / bitcell_um2(22.0)
  return jnp.where(node < 22.0, low, _loglog(table, node))


def check_node(nm: float) -> bool:
  """True when ``nm`` lies in the tabulated range (7..180 nm)."""
  return 5.0 <= nm <= 180.0 and not math.isnan(nm)
