"""Primitive components: energy per action (pJ) and area (um^2) at 45 nm.

Every model is a smooth jax function of its sizes (``depth``, ``width``,
bit widths), so sizes can be traced by ``jax.grad``; the technology node
enters through :mod:`jaxloop.estimate.technology`.  The built-in models play
the part of Accelergy's estimation plug-ins, so the class names and
attributes of Timeloop/Accelergy specifications mean what they mean there.
Sources:

* ``aladdin_*`` classes and Accelergy's generic logic classes (``intmac``,
  ``intmultiplier``, ``fpadder``, ``fpmultiplier``, ``fpmac``,
  ``comparator``, ``counter``, ``register``, ``regfile``): the per-operation
  figures of Aladdin's standard-cell characterisation (Y. S. Shao et al.,
  "Aladdin: a pre-RTL, power-performance accelerator simulator", ISCA 2014;
  40 nm library at a 1 ns cycle), the figures Accelergy's Aladdin-based
  plug-ins tabulate and apply unscaled at both 40 and 45 nm; we take them as
  45 nm figures.  Per 32-bit operation: integer add 0.21 pJ, integer
  multiply 12.68 pJ, comparison 0.0295 pJ, count 0.251 pJ, single-precision
  float add 16.7 pJ and multiply 35.3 pJ; a register bit 0.009 pJ.  Areas
  278, 6350, 71, 496, 4360, 4360 and 6.0 um^2.  How they scale with bit
  widths follows the plug-in that serves each class in Accelergy (checked
  against the reference ERTs):

  - ``aladdin_adder``/``_comparator``/``_counter``/``_register``/
    ``_multiplier`` (Accelergy's library tables): linear in each width
    attribute the table knows (``width``/``datawidth``; the multiplier also
    ``width_a``, ``width_b``), every other attribute ignored, 32 bits (a
    register: 1 bit) when none is given.  So a multiplier given
    ``width_a``/``width_b`` scales with their product, one given ``width``
    linearly, and an ``aladdin_adder`` given only ``width_a``/``width_b`` is
    a 32-bit adder.  The library charges a register's energy to reads and
    nothing to writes, and logic nothing for ``write``/``update``.
  - ``intmultiplier``, ``fpmultiplier``: quadratic in the width (an array
    multiplier); ``fpadder``, ``comparator``, ``counter``: linear;
    ``intmac``/``fpmac``: adder plus multiplier of the same width (unless
    ``adder_width`` says otherwise).
  - ``regfile``: ``width`` register bits plus ``depth`` address comparators
    of ``log2(depth)`` bits per access (Aladdin's register-file model).

* ``intadder``/``adder``: M. Horowitz, "Computing's energy problem (and
  what we can do about it)", ISSCC 2014, 45 nm: 8/32-bit add 0.03/0.1 pJ,
  36/137 um^2, linear in between (within 10 % of the NeuroSim adder that
  serves ``intadder`` in Accelergy's reference tables).
* ``SRAM``: a smooth fit to CACTI 7 (:mod:`jaxloop.estimate.calibration`,
  ``experiments/calibrate_sram.py``).  Arrays narrower than 32 bits or
  shallower than 64 rows (below CACTI's range) are scaled from the 32 x 64
  array as Accelergy's CACTI plug-in does: dynamic energy by
  ``0.3 + 0.7 width/32`` (periphery + bit columns) and by ``(depth/64)^0.78``
  (CACTI's rule of thumb, 2x rows -> 1.56x energy), leakage and area in
  proportion to the bits.  Beyond the fitted range (1024 bits, 65536 rows,
  16 Mbit) energy grows linearly with width and with ``depth^0.78``.
* DRAM energy per bit, interface and core together: HBM2 3.9 and GDDR5 14
  pJ/bit (O'Connor et al., "Fine-grained DRAM", MICRO 2017); DDR3 20 pJ/bit
  (lower end of Horowitz's 1.3-2.6 nJ per 64-bit access); DDR4 15 and LPDDR4
  8 pJ/bit (Li, Reddy & Jacob, "A performance & power comparison of modern
  high-speed DRAM architectures", MEMSYS 2018 report DDR4 below DDR3 and
  LPDDR4 at about half of DDR4; 8 pJ/bit is also the figure Accelergy's
  LPDDR4 default uses).  DRAM has no on-chip area.
* Wires: a repeated on-chip wire has about 0.2 pF/mm; with random data
  (activity 0.5) that is ``0.5 C V^2`` = 0.1 pJ per bit per mm at 1 V.
* Leakage: Aladdin's leakage powers for logic (32-bit adder 2.3 uW,
  multiplier 80 uW, register bit 0.07 uW, comparator 0.025 uW), CACTI's
  standby leakage for SRAM; per action ``leak`` is that power times the
  clock period.  As in Accelergy, ``aladdin_register`` leaks nothing and a
  ``regfile`` leaks as one entry's registers plus its comparators.
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Mapping

import jax.numpy as jnp

from jaxloop.errors import SpecError
from jaxloop.estimate import calibration as cal
from jaxloop.estimate import technology as tech

# Aladdin (ISCA 2014) 40 nm characterisation at 1 ns, used as 45 nm:
# (pJ per operation, um^2, leakage mW) at 32 bits (register: 1 bit).
_ALADDIN = {
    "add": (0.21, 278.0, 0.0023),
    "multiply": (12.68, 6350.0, 0.08),
    "compare": (0.02947, 71.0, 2.51e-5),
    "count": (0.25074, 495.5, 3.213e-4),
    "fp_add": (16.679, 4360.0, 0.053),
    "fp_multiply": (35.3, 4360.0, 0.12),
    "register": (0.009, 5.98, 7e-5),
}
# Horowitz ISSCC 2014, 45 nm (integer adder).
_ADD8_PJ, _ADD32_PJ = 0.03, 0.1
_ADD8_UM2, _ADD32_UM2 = 36.0, 137.0
_ADD_LEAK_MW_PER_UM2 = 0.0023 / 278.0       # Aladdin adder's leakage density
_WIRE_PJ_PER_BIT_MM = 0.1
# Below CACTI's smallest array (32 bits x 64 rows, the lower ends of the
# fitted range) and beyond the largest: CACTI's rule of thumb, 2x rows ->
# 1.56x energy, and the periphery's share of a narrow array's energy (both
# as Accelergy's CACTI plug-in scales).
DEPTH_ENERGY_EXPONENT = 1.56 / 2.0
_PERIPHERY_SHARE = 0.3

# pJ per bit, interface + core.
DRAM_PJ_PER_BIT = {
    "LPDDR4": 8.0, "DDR4": 15.0, "DDR3": 20.0, "GDDR5": 14.0, "HBM2": 3.9,
}
DEFAULT_DRAM = "LPDDR4"

_MISSING = object()


class Attrs:
  """A component's attributes with located errors.

  Attributes:
    component: the component's name (for messages).
    values: attribute name -> value (numbers, jax scalars or strings).
    where: the spec file(s), for messages.
  """

  def __init__(self, component: str, values: Mapping[str, object],
               where: str = ""):
    self.component = component
    self.values = dict(values)
    self.where = where

  def has(self, *names: str) -> bool:
    return any(_is_number(self.values.get(n)) for n in names)

  def num(self, *names: str, default=_MISSING):
    """The first of ``names`` that holds a number (jax scalars allowed)."""
    for n in names:
      v = self.values.get(n)
      if _is_number(v):
        return jnp.asarray(_to_number(v), dtype=jnp.float64)
    if default is not _MISSING:
      return jnp.asarray(default, dtype=jnp.float64)
    raise SpecError(
        f"component '{self.component}' needs attribute '{names[0]}'"
        + (f" (or {', '.join(repr(n) for n in names[1:])})"
           if len(names) > 1 else ""),
        path=f"architecture.{self.component}.attributes.{names[0]}",
        where=self.where,
        hint=f"Add '{names[0]}: <number>' to the component's attributes.")

  def text(self, name: str, default: str = "") -> str:
    v = self.values.get(name)
    return default if v is None else str(v)


def _to_number(v):
  if isinstance(v, str):
    return float(v)
  return v


def _is_number(v) -> bool:
  if isinstance(v, bool) or v is None:
    return False
  if isinstance(v, str):
    try:
      float(v)
      return True
    except ValueError:
      return False
  return hasattr(v, "dtype") or isinstance(v, (int, float))


@dataclasses.dataclass(frozen=True)
class Context:
  """Where a component sits: technology node (nm) and clock period (s)."""
  node: float = 45.0
  cycle_seconds: float = 1e-9


# ---------------------------------------------------------------- logic

def int_adder_pj(bits):
  """Integer add (pJ, 45 nm): line through Horowitz's 8/32-bit points."""
  return _ADD8_PJ + (bits - 8.0) * (_ADD32_PJ - _ADD8_PJ) / 24.0


def int_adder_um2(bits):
  return _ADD8_UM2 + (bits - 8.0) * (_ADD32_UM2 - _ADD8_UM2) / 24.0


def _leak(milliwatts, ctx: Context):
  """Energy (pJ) leaked in one clock period."""
  return milliwatts * 1e-3 * ctx.cycle_seconds * 1e12


def _logic(energy_pj, area_um2, leak_mw, actions, ctx: Context,
           free=("write", "update")):
  """Energies of a logic block: ``energy_pj`` for each of ``actions``,
  nothing for ``free`` ones, leakage; area scaled to the node."""
  e = energy_pj * tech.logic_energy_factor(ctx.node)
  out = {name: e for name in actions}
  for name in free:
    out.setdefault(name, jnp.zeros_like(e))
  out["leak"] = _leak(leak_mw, ctx) * tech.logic_energy_factor(ctx.node)
  return out, area_um2 * tech.area_factor(ctx.node)


def _aladdin(kind: str, scale, actions, ctx: Context, free=("write",
                                                            "update")):
  pj, um2, mw = _ALADDIN[kind]
  return _logic(pj * scale, um2 * scale, mw * scale, actions, ctx, free)


def _table_scale(a: Attrs, groups, default_bits: float):
  """Accelergy's library-table scaling: each width attribute the table
  knows scales its figure linearly; none given -> the table's own width."""
  scale, given = 1.0, False
  for names in groups:
    if a.has(*names):
      scale = scale * a.num(*names) / default_bits
      given = True
  return jnp.asarray(scale if given else 1.0, dtype=jnp.float64)


_WIDTH = ("width", "datawidth")


def aladdin_adder(a: Attrs, ctx: Context):
  return _aladdin("add", _table_scale(a, (_WIDTH,), 32.0),
                  ("add", "read", "compute"), ctx)


def aladdin_multiplier(a: Attrs, ctx: Context):
  s = _table_scale(a, (_WIDTH, ("width_a", "datawidth_a"),
                       ("width_b", "datawidth_b")), 32.0)
  return _aladdin("multiply", s, ("multiply", "read", "compute", "mult"),
                  ctx)


def aladdin_comparator(a: Attrs, ctx: Context):
  return _aladdin("compare", _table_scale(a, (_WIDTH,), 32.0),
                  ("compare", "read", "compute"), ctx)


def aladdin_counter(a: Attrs, ctx: Context):
  return _aladdin("count", _table_scale(a, (_WIDTH,), 32.0),
                  ("count", "read", "increment", "add"), ctx)


def aladdin_register(a: Attrs, ctx: Context):
  """``width`` bits (default 1); energy charged to reads only, no leakage
  (Accelergy's library table lists none for its register)."""
  w = a.num("width", "datawidth", default=1.0)
  out, area = _aladdin("register", w, ("read",), ctx)
  out["leak"] = jnp.zeros_like(out["leak"])
  return out, area


def _width(a: Attrs):
  if a.has("width", "n_bits", "precision", "datawidth"):
    return a.num("width", "n_bits", "precision", "datawidth")
  if a.has("width_a") or a.has("width_b"):
    wa = a.num("width_a", "width_b")
    wb = a.num("width_b", "width_a")
    return jnp.sqrt(wa * wb)
  return a.num("width", "n_bits", "datawidth")


def _fp_width(a: Attrs):
  if a.has("exponent") and a.has("mantissa"):
    return a.num("exponent") + a.num("mantissa")
  return a.num("width", "datawidth")


def int_adder(a: Attrs, ctx: Context):
  w = _width(a)
  area = int_adder_um2(w)
  return _logic(int_adder_pj(w), area, _ADD_LEAK_MW_PER_UM2 * area,
                ("add", "read", "compute", "count", "increment"), ctx)


def int_multiplier(a: Attrs, ctx: Context):
  """Array multiplier, quadratic in the width."""
  s = (_width(a) / 32.0) ** 2
  return _aladdin("multiply", s, ("multiply", "read", "compute", "mult"),
                  ctx)


def fp_adder(a: Attrs, ctx: Context):
  s = _fp_width(a) / 32.0
  return _aladdin("fp_add", s, ("add", "read", "compute"), ctx)


def fp_multiplier(a: Attrs, ctx: Context):
  s = (_fp_width(a) / 32.0) ** 2
  return _aladdin("fp_multiply", s, ("multiply", "read", "compute", "mult"),
                  ctx)


def comparator(a: Attrs, ctx: Context):
  s = a.num("n_bits", "width", "datawidth") / 32.0
  return _aladdin("compare", s, ("compare", "read", "compute"), ctx)


def counter(a: Attrs, ctx: Context):
  s = a.num("width", "n_bits", "datawidth") / 32.0
  return _aladdin("count", s, ("count", "read", "increment", "add"), ctx)


def register(a: Attrs, ctx: Context):
  """``width`` flip-flops (default one bit); every access costs the same."""
  w = a.num("width", "datawidth", default=1.0)
  return _aladdin("register", w, ("read", "write", "update", "access"), ctx,
                  free=())


def wire(a: Attrs, ctx: Context):
  """``width`` bits over ``length`` um (default 1 bit)."""
  w = a.num("width", "datawidth", default=1.0)
  length_mm = a.num("length") * 1e-3
  e = w * length_mm * _WIRE_PJ_PER_BIT_MM * tech.wire_energy_factor(ctx.node)
  return {"transfer": e, "read": e, "leak": jnp.zeros_like(e)}, 0.0 * e


# ---------------------------------------------------------------- storage

def _cubic(coef, x, z):
  terms, k = 0.0, 0
  for i in range(4):
    for j in range(i + 1):
      terms = terms + coef[k] * x ** (i - j) * z ** j
      k += 1
  return jnp.exp(terms)


def sram_45nm(width, depth):
  """SRAM at 45 nm from the CACTI fit: ``(read pJ, write pJ, leakage mW,
  area um^2)`` per access of ``width`` bits in a ``depth``-row array."""
  width = jnp.asarray(width, dtype=jnp.float64)
  depth = jnp.asarray(depth, dtype=jnp.float64)
  lo_w, hi_w = cal.LOG2_WIDTH
  lo_d, hi_d = cal.LOG2_DEPTH
  # The array CACTI is asked for (clamped into the fitted range) ...
  x = jnp.clip(jnp.log2(jnp.maximum(width, 1.0)), lo_w, hi_w)
  z = jnp.clip(jnp.log2(jnp.maximum(depth, 1.0)), lo_d, hi_d)
  z = jnp.minimum(z, cal.LOG2_BITS_MAX - x)
  w_fit, d_fit = 2.0 ** x, 2.0 ** z
  # ... and how the asked-for one relates to it.
  w_ratio, d_ratio = width / w_fit, depth / d_fit
  narrow = jnp.minimum(w_ratio, 1.0)
  e_scale = (jnp.where(w_ratio < 1.0,
                       _PERIPHERY_SHARE + (1.0 - _PERIPHERY_SHARE) * narrow,
                       w_ratio) * d_ratio ** DEPTH_ENERGY_EXPONENT)
  bits_scale = w_ratio * d_ratio
  return (_cubic(cal.READ_PJ, x, z) * e_scale,
          _cubic(cal.WRITE_PJ, x, z) * e_scale,
          _cubic(cal.LEAK_MW, x, z) * bits_scale,
          _cubic(cal.AREA_UM2, x, z) * bits_scale)


def sram(a: Attrs, ctx: Context):
  w, d = a.num("width"), a.num("depth")
  read, write, leak_mw, area = sram_45nm(w, d)
  f = tech.sram_energy_factor(ctx.node)
  return ({"read": read * f, "write": write * f, "update": write * f,
           "leak": _leak(leak_mw * tech.sram_leak_factor(ctx.node), ctx)},
          area * tech.sram_area_factor(ctx.node))


def regfile_access_pj(width, depth):
  """Register file access (pJ, 45 nm), Aladdin's model: ``width`` register
  bits and ``depth`` comparators of ``log2(depth)`` bits."""
  cmp_bits = jnp.log2(jnp.maximum(depth, 1.0))
  return (width * _ALADDIN["register"][0]
          + depth * _ALADDIN["compare"][0] * cmp_bits / 32.0)


def regfile(a: Attrs, ctx: Context):
  w, d = a.num("width"), a.num("depth")
  e = regfile_access_pj(w, d) * tech.logic_energy_factor(ctx.node)
  cmp_bits = jnp.log2(jnp.maximum(d, 1.0)) / 32.0
  area = (w * d * _ALADDIN["register"][1]
          + d * cmp_bits * _ALADDIN["compare"][1]) * tech.area_factor(ctx.node)
  # Leakage as Aladdin's register-file model counts it: one entry's
  # registers and the comparators.
  leak_mw = w * _ALADDIN["register"][2] + d * cmp_bits * _ALADDIN[
      "compare"][2]
  return ({"read": e, "write": e, "update": e,
           "leak": _leak(leak_mw, ctx) * tech.logic_energy_factor(ctx.node)},
          area)


def _soft_min(a, b, p=4.0):
  """Smooth minimum ``(a^-p + b^-p)^(-1/p)`` (a little below min(a, b))."""
  return (a ** -p + b ** -p) ** (-1.0 / p)


def generic_storage(a: Attrs, ctx: Context):
  """``storage`` with no ``subclass``: the cheaper of an SRAM and a
  register file of the same shape (a smooth minimum), as a designer would
  pick; small buffers come out as registers.  (With a ``subclass``, that
  class is estimated instead, as in Accelergy.)"""
  s, s_area = sram(a, ctx)
  r, r_area = regfile(a, ctx)
  out = {k: _soft_min(s[k], r[k]) for k in ("read", "write", "update")}
  area = _soft_min(s_area, r_area)
  out["leak"] = jnp.where(r["read"] < s["read"], r["leak"], s["leak"])
  return out, area


def dram(a: Attrs, ctx: Context):
  """Off-chip DRAM: ``width`` bits per access times the type's pJ/bit."""
  kind = a.text("type", DEFAULT_DRAM).upper()
  if kind not in DRAM_PJ_PER_BIT:
    raise SpecError(
        f"component '{a.component}' has DRAM type '{kind}', which has no "
        "built-in energy", path=f"architecture.{a.component}.attributes.type",
        where=a.where, hint="Known types: " + ", ".join(DRAM_PJ_PER_BIT))
  w = a.num("width", "datawidth")
  e = w * DRAM_PJ_PER_BIT[kind]
  return ({"read": e, "write": e, "update": e, "leak": 0.0 * e}, 0.0 * e)


def dummy(a: Attrs, ctx: Context):
  del a, ctx
  z = jnp.zeros(())
  return {"read": z, "write": z, "update": z, "leak": z}, z


PRIMITIVES: dict[str, Callable] = {
    "SRAM": sram, "sram": sram, "regfile": regfile, "DRAM": dram,
    "dram": dram, "storage": generic_storage, "dummy_storage": dummy,
    "intadder": int_adder, "adder": int_adder,
    "intmultiplier": int_multiplier, "multiplier": int_multiplier,
    "fpadder": fp_adder, "fpmultiplier": fp_multiplier,
    "comparator": comparator, "counter": counter, "register": register,
    "reg": register, "wire": wire,
    "aladdin_adder": aladdin_adder, "aladdin_multiplier": aladdin_multiplier,
    "aladdin_comparator": aladdin_comparator,
    "aladdin_counter": aladdin_counter, "aladdin_register": aladdin_register,
}

# Attributes each primitive needs (for messages and checks).
REQUIRED = {
    "SRAM": ("width", "depth"), "regfile": ("width", "depth"),
    "storage": ("width", "depth"), "DRAM": ("width",),
}
