"""Primitive components: energy per action (pJ) and area (um^2) at 45 nm.

Every model is a smooth jax function of its sizes (``depth``, ``width``,
bit widths), so sizes can be traced by ``jax.grad``; the technology node
enters through :mod:`jaxloop.estimate.technology`.  Sources:

* Logic and SRAM: M. Horowitz, "Computing's energy problem (and what we can
  do about it)", ISSCC 2014, 45 nm, 0.9 V: 8/32-bit integer add 0.03/0.1 pJ,
  8/32-bit integer multiply 0.2/3.1 pJ, 16/32-bit float add 0.4/0.9 pJ,
  16/32-bit float multiply 1.1/3.7 pJ; areas 36/137, 282/3495, 1360/4184,
  1640/7700 um^2; 64-bit SRAM reads 10 pJ (8 KB), 20 pJ (32 KB),
  100 pJ (1 MB).  Between the published widths the models are power laws
  (integer add: linear), i.e. the straight lines through the two points in
  log-log space.
* Registers and comparators are built from Horowitz's per-bit adder cost
  (the slope of his 8/32-bit adder figures, 2.9 fJ per full-adder bit): a
  flip-flop access costs about one full-adder bit, an equality comparator
  half an adder of the same width (n XORs and a reduction tree), one leg of a
  register file's read multiplexer a quarter of a full-adder bit.  The
  flip-flop area is Nangate's 45 nm open cell library DFF_X1 (about 4.5 um^2).
* SRAM area: high-density 6T bit cell (Intel 45 nm: 0.346 um^2) at 80 %
  array efficiency (the rest: decoders, sense amplifiers, I/O).
* DRAM energy per bit, interface and core together: HBM2 3.9 and GDDR5 14
  pJ/bit (O'Connor et al., "Fine-grained DRAM", MICRO 2017); DDR3 20 pJ/bit
  (lower end of Horowitz's 1.3-2.6 nJ per 64-bit access); DDR4 15 and LPDDR4
  8 pJ/bit (Li, Reddy & Jacob, "A performance & power comparison of modern
  high-speed DRAM architectures", MEMSYS 2018 report DDR4 below DDR3 and
  LPDDR4 at about half of DDR4; 8 pJ/bit is also the figure Accelergy's
  LPDDR4 default uses).  DRAM has no on-chip area.
* Wires: a repeated on-chip wire has about 0.2 pF/mm; with random data
  (activity 0.5) that is ``0.5 C V^2`` = 0.1 pJ per bit per mm at 1 V.
* Leakage: low-standby-power devices, about 5 pW per SRAM bit and 10 pW per
  um^2 of logic at 45 nm (an order-of-magnitude assumption; leakage is well
  under 1 % of every reference case's energy).
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Mapping

import jax.numpy as jnp

from jaxloop.errors import SpecError
from jaxloop.estimate import technology as tech

# Horowitz ISSCC 2014, 45 nm.
_ADD8_PJ, _ADD32_PJ = 0.03, 0.1
_ADD8_UM2, _ADD32_UM2 = 36.0, 137.0
_MUL8_PJ, _MUL32_PJ = 0.2, 3.1
_MUL8_UM2, _MUL32_UM2 = 282.0, 3495.0
_FADD16_PJ, _FADD32_PJ = 0.4, 0.9
_FADD16_UM2, _FADD32_UM2 = 1360.0, 4184.0
_FMUL16_PJ, _FMUL32_PJ = 1.1, 3.7
_FMUL16_UM2, _FMUL32_UM2 = 1640.0, 7700.0
_SRAM64_8KB_PJ, _SRAM64_1MB_PJ = 10.0, 100.0
# Derived.
_FA_BIT_PJ = (_ADD32_PJ - _ADD8_PJ) / 24.0          # 2.9 fJ per adder bit
_DFF_UM2 = 4.5                                        # Nangate45 DFF_X1
_SRAM_EFFICIENCY = 0.8
_LEAK_W_PER_BIT = 5e-12
_LEAK_W_PER_UM2 = 1e-11
_WIRE_PJ_PER_BIT_MM = 0.1

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
  return _ADD8_PJ + (bits - 8.0) * _FA_BIT_PJ


def int_adder_um2(bits):
  return _ADD8_UM2 + (bits - 8.0) * (_ADD32_UM2 - _ADD8_UM2) / 24.0


def _power_law(x, x0, y0, x1, y1):
  return y0 * (x / x0) ** (jnp.log(y1 / y0) / jnp.log(x1 / x0))


def int_multiplier_pj(bits):
  """Integer multiply (pJ, 45 nm), ``bits`` x ``bits``: power law through
  Horowitz's 8- and 32-bit points (exponent 1.98)."""
  return _power_law(bits, 8.0, _MUL8_PJ, 32.0, _MUL32_PJ)


def int_multiplier_um2(bits):
  return _power_law(bits, 8.0, _MUL8_UM2, 32.0, _MUL32_UM2)


def fp_adder_pj(bits):
  return _power_law(bits, 16.0, _FADD16_PJ, 32.0, _FADD32_PJ)


def fp_adder_um2(bits):
  return _power_law(bits, 16.0, _FADD16_UM2, 32.0, _FADD32_UM2)


def fp_multiplier_pj(bits):
  return _power_law(bits, 16.0, _FMUL16_PJ, 32.0, _FMUL32_PJ)


def fp_multiplier_um2(bits):
  return _power_law(bits, 16.0, _FMUL16_UM2, 32.0, _FMUL32_UM2)


# ---------------------------------------------------------------- storage

def sram_access_pj(width, depth):
  """SRAM read or write of ``width`` bits from ``depth`` rows (pJ, 45 nm).

  Horowitz's 64-bit reads (10 pJ at 8 KB = 1024 rows, 100 pJ at 1 MB) give
  the energy per bit as a power law of the row count, exponent 0.475 (his
  32 KB point, 20 pJ, lies within 3 %): bit lines and the H-tree grow with
  the array's height.
  """
  per_bit_8kb = _SRAM64_8KB_PJ / 64.0
  exponent = jnp.log(_SRAM64_1MB_PJ / _SRAM64_8KB_PJ) / jnp.log(128.0)
  return width * per_bit_8kb * (depth / 1024.0) ** exponent


def sram_um2(width, depth, node):
  return width * depth * tech.bitcell_um2(node) / _SRAM_EFFICIENCY


def regfile_access_pj(width, depth):
  """Flip-flop register file access (pJ, 45 nm): per bit one flip-flop
  access plus one read-multiplexer leg per entry."""
  return width * _FA_BIT_PJ * (1.0 + 0.25 * depth)


def regfile_um2(width, depth, node):
  return width * depth * _DFF_UM2 * tech.area_factor(node)


def _soft_min(a, b, p=4.0):
  """Smooth minimum ``(a^-p + b^-p)^(-1/p)`` (a little below min(a, b))."""
  return (a ** -p + b ** -p) ** (-1.0 / p)


# ---------------------------------------------------------------- classes

def _leak(watts, ctx: Context):
  return watts * ctx.cycle_seconds * 1e12


def _logic(energy_pj, area_um2, actions, a: Attrs, ctx: Context):
  e = energy_pj * tech.energy_factor(ctx.node)
  area = area_um2 * tech.area_factor(ctx.node)
  out = {name: e for name in actions}
  out["leak"] = _leak(_LEAK_W_PER_UM2 * area, ctx)
  return out, area


def _width(a: Attrs):
  if a.has("width", "n_bits", "precision", "datawidth"):
    return a.num("width", "n_bits", "precision", "datawidth")
  if a.has("width_a") or a.has("width_b"):
    wa = a.num("width_a", "width_b")
    wb = a.num("width_b", "width_a")
    return jnp.maximum(wa, wb)
  return a.num("width", "n_bits", "datawidth")


def _fp_width(a: Attrs):
  if a.has("exponent") and a.has("mantissa"):
    return a.num("exponent") + a.num("mantissa")
  return a.num("width", "datawidth")


def int_adder(a: Attrs, ctx: Context):
  w = _width(a)
  return _logic(int_adder_pj(w), int_adder_um2(w),
                ("add", "read", "compute", "count", "increment"), a, ctx)


def int_multiplier(a: Attrs, ctx: Context):
  if a.has("width_a") and a.has("width_b"):
    w = jnp.sqrt(a.num("width_a") * a.num("width_b"))
  else:
    w = _width(a)
  return _logic(int_multiplier_pj(w), int_multiplier_um2(w),
                ("multiply", "read", "compute", "mult"), a, ctx)


def fp_adder(a: Attrs, ctx: Context):
  w = _fp_width(a)
  return _logic(fp_adder_pj(w), fp_adder_um2(w), ("add", "read", "compute"),
                a, ctx)


def fp_multiplier(a: Attrs, ctx: Context):
  w = _fp_width(a)
  return _logic(fp_multiplier_pj(w), fp_multiplier_um2(w),
                ("multiply", "read", "compute", "mult"), a, ctx)


def comparator(a: Attrs, ctx: Context):
  w = a.num("n_bits", "width", "datawidth")
  return _logic(0.5 * int_adder_pj(w), 0.5 * int_adder_um2(w),
                ("compare", "read", "compute"), a, ctx)


def register(a: Attrs, ctx: Context):
  """``width`` flip-flops (default one bit, as Aladdin's register)."""
  w = a.num("width", "datawidth", default=1.0)
  return _logic(w * _FA_BIT_PJ, w * _DFF_UM2,
                ("read", "write", "update", "access"), a, ctx)


def wire(a: Attrs, ctx: Context):
  """``width`` bits over ``length`` um (default 1 bit)."""
  w = a.num("width", "datawidth", default=1.0)
  length_mm = a.num("length") * 1e-3
  e = w * length_mm * _WIRE_PJ_PER_BIT_MM * tech.wire_energy_factor(ctx.node)
  return {"transfer": e, "read": e, "leak": jnp.zeros_like(e)}, 0.0 * e


def sram(a: Attrs, ctx: Context):
  w, d = a.num("width"), a.num("depth")
  e = sram_access_pj(w, d) * tech.energy_factor(ctx.node)
  bits = w * d
  leak = _leak(_LEAK_W_PER_BIT * bits * tech.area_factor(ctx.node), ctx)
  return ({"read": e, "write": e, "update": e, "leak": leak},
          sram_um2(w, d, ctx.node))


def regfile(a: Attrs, ctx: Context):
  w, d = a.num("width"), a.num("depth")
  e = regfile_access_pj(w, d) * tech.energy_factor(ctx.node)
  area = regfile_um2(w, d, ctx.node)
  return ({"read": e, "write": e, "update": e,
           "leak": _leak(_LEAK_W_PER_UM2 * area, ctx)}, area)


def generic_storage(a: Attrs, ctx: Context):
  """Accelergy's generic ``storage``: the cheaper of an SRAM and a
  flip-flop register file of the same shape (a smooth minimum), as a
  designer would pick; small buffers come out as registers."""
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
    "intadder": int_adder, "aladdin_adder": int_adder, "adder": int_adder,
    "intmultiplier": int_multiplier, "aladdin_multiplier": int_multiplier,
    "multiplier": int_multiplier, "fpadder": fp_adder,
    "fpmultiplier": fp_multiplier, "comparator": comparator,
    "aladdin_comparator": comparator, "register": register,
    "aladdin_register": register, "counter": int_adder,
    "aladdin_counter": int_adder, "wire": wire,
}

# Attributes each primitive needs (for messages and checks).
REQUIRED = {
    "SRAM": ("width", "depth"), "regfile": ("width", "depth"),
    "storage": ("width", "depth"), "DRAM": ("width",),
}
