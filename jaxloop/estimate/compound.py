"""Compound components: Accelergy's ``compound_components`` semantics.

A compound class lists subcomponents (``name[lo..hi]`` means ``hi-lo+1``
copies; attributes are expressions over the parent's attributes) and maps
each of its actions to subcomponent actions, each optionally scaled by an
``energy_scale`` expression; an action's energy is the sum, its area the sum
of the subcomponents' areas times their ``area_scale``.  This follows the
description of compound components in Wu, Emer & Sze, "Accelergy: an
architecture-level energy estimation methodology for accelerator designs",
ICCAD 2019, and the v0.4 YAML format of the Timeloop/Accelergy exercises.

Without a definition in the spec, four classes have built-in meanings
(:data:`BUILTIN_COMPOUNDS`), following the definitions of the
Timeloop/Accelergy exercises and Accelergy's Aladdin plug-in:
``smartbuffer_SRAM`` (an SRAM plus an address-generating adder of
``log2(depth)`` bits per access), ``smartbuffer_RF`` (a register file with
one comparator per entry, at least 32 x 64, scaled down below that, plus the
address adder), ``intmac`` (integer multiplier + adder) and ``fpmac`` (float
multiplier + adder).
"""
from __future__ import annotations

import dataclasses
import re
from typing import Callable, Mapping, Optional

import jax.numpy as jnp

from jaxloop.errors import SpecError
from jaxloop.estimate import expressions
from jaxloop.estimate import primitives as prim
from jaxloop.estimate.primitives import Attrs, Context

# Compound classes Accelergy knows only from a ``compound_components``
# definition (the exercises' components/*.yaml); estimated without one, each
# is recorded in ``Estimator.fallbacks`` with what was used instead.
NEEDS_DEFINITION = {
    "smartbuffer_SRAM": "an SRAM plus a log2(depth)-bit address adder per "
                        "access",
    "smartbuffer_RF": "a register file with one comparator per entry plus a "
                      "log2(depth)-bit address adder per access",
}

# Attributes a subcomponent inherits from its parent when it does not set
# them itself.
INHERITED = ("technology", "global_cycle_seconds")
_RANGE = re.compile(r"^\s*([^\[\]]+?)\s*(?:\[(.+?)(?:\.\.(.+))?\])?\s*$")


@dataclasses.dataclass(frozen=True)
class Definition:
  """One ``compound_components.classes`` entry, as read.

  Attributes:
    name: class name.
    attributes: ``((key, default or expression), ...)`` in file order.
    subcomponents: the raw subcomponent mappings.
    actions: the raw action mappings.
    where: file it came from.
  """
  name: str
  attributes: tuple
  subcomponents: tuple
  actions: tuple
  where: str = ""


def parse_definitions(node: object, where: str = "") -> dict[str, Definition]:
  """Definitions from a ``compound_components`` node (``{classes: [...]}``
  or a plain list)."""
  if isinstance(node, Mapping):
    node = node.get("classes") or []
  out = {}
  for c in node or []:
    if not isinstance(c, Mapping) or not c.get("name"):
      continue
    out[str(c["name"])] = Definition(
        name=str(c["name"]),
        attributes=tuple((str(k), v) for k, v in
                         (c.get("attributes") or {}).items()),
        subcomponents=tuple(c.get("subcomponents") or ()),
        actions=tuple(c.get("actions") or ()),
        where=where)
  return out


def split_range(text: str, names: dict):
  """``storage[1..width*depth]`` -> (``storage``, count); no range -> None."""
  m = _RANGE.match(str(text))
  if not m:
    return str(text), None
  base, lo, hi = m.group(1), m.group(2), m.group(3)
  if lo is None:
    return base, None
  if hi is None:
    return base, 1.0
  return base, _value(hi, names) - _value(lo, names) + 1


def _value(expr, names):
  if isinstance(expr, (int, float)) and not isinstance(expr, bool):
    return expr
  try:
    return expressions.evaluate(str(expr), names)
  except expressions.ExpressionError as e:
    raise SpecError(f"cannot evaluate {expr!r}: {e}") from e


class Estimator:
  """Resolves a class name to (energies per action, area).

  Args:
    definitions: compound classes from the spec (take precedence).
    where: spec file names, for messages.
  """

  def __init__(self, definitions: Optional[dict[str, Definition]] = None,
               where: str = ""):
    self.definitions = dict(definitions or {})
    self.where = where
    # (component, class, what was used) of classes estimated by a built-in
    # model for want of their definition, in the order met.
    self.fallbacks: list[tuple[str, str, str]] = []

  def known_classes(self) -> list[str]:
    return sorted(set(self.definitions) | set(BUILTIN_COMPOUNDS)
                  | set(prim.PRIMITIVES))

  def component(self, cls: str, component: str, attributes: Mapping,
                ctx: Context, _depth: int = 0):
    """Energies (pJ per action) and area (um^2) of one component.

    Raises:
      SpecError: unknown class, or a required attribute is missing (the
        message names the component, class and attribute).
    """
    if _depth > 16:
      raise SpecError(f"compound class '{cls}' nests too deeply (a cycle?)",
                      path=f"compound_components.{cls}", where=self.where)
    if cls in self.definitions:
      return self._compound(self.definitions[cls], component, attributes,
                            ctx, _depth)
    fn = BUILTIN_COMPOUNDS.get(cls) or prim.PRIMITIVES.get(cls)
    if cls in NEEDS_DEFINITION:
      self.fallbacks.append((component, cls, NEEDS_DEFINITION[cls]))
    if fn is None:
      raise SpecError(
          f"component '{component}' has class '{cls}', which jaxloop cannot "
          "estimate", path=f"architecture.{component}.class", where=self.where,
          hint="Known classes: " + ", ".join(self.known_classes())
          + ". Define it under compound_components, or pass an ERT.")
    return fn(Attrs(component, attributes, self.where), ctx)

  def _compound(self, d: Definition, component: str, given: Mapping,
                ctx: Context, depth: int):
    """Energies per action and area of a compound class instance.

    Each action's energy is the sum over the subcomponent actions it maps
    to of ``count * energy_scale * energy``; the area is the sum of the
    subcomponents' ``count * area_scale * area``, times the class's own
    ``area_scale`` attribute if it declares one.
    """
    names = self._class_attributes(d, component, given, ctx)
    subs, area = self._subcomponents(d, component, names, ctx, depth)
    out = {str(a.get("name")): self._action_energy(d, a, subs, names)
           for a in (self._mapping_entry(d, x, "actions") for x in d.actions)}
    # An attribute named ``area_scale`` also scales the component's own area
    # (on top of any subcomponent ``area_scale``), as Accelergy does: the
    # exercises' smartbuffer_RF areas in the reference ARTs carry it twice.
    if "area_scale" in dict(d.attributes) and not isinstance(
        names.get("area_scale"), str):
      area = area * names["area_scale"]
    return out, area

  def _class_attributes(self, d: Definition, component: str, given: Mapping,
                        ctx: Context) -> dict:
    """The names a class's expressions see: ``global_cycle_seconds``, the
    given attributes, then each class attribute not given (its default,
    evaluated in file order; ``must_specify`` ones must be given unless
    inherited)."""
    names: dict = {"global_cycle_seconds": ctx.cycle_seconds}
    names.update({k: v for k, v in given.items()})
    for key, default in d.attributes:
      if key in given and given[key] is not None:
        continue
      if not isinstance(default, str):
        names[key] = default
        continue
      if default.strip() == "must_specify":
        if key in INHERITED and key in names:
          continue
        raise SpecError(
            f"component '{component}' (class '{d.name}') needs attribute "
            f"'{key}'", path=f"architecture.{component}.attributes.{key}",
            where=self.where,
            hint=f"Class '{d.name}' marks '{key}' must_specify.")
      names[key] = self._attr(default, names)
    return names

  def _subcomponents(self, d: Definition, component: str, names: dict,
                     ctx: Context, depth: int):
    """Each subcomponent's energies and copy count, by base name, and the
    summed area of all copies (scaled by their ``area_scale``).

    Returns:
      ``({base name: (energies per action, count)}, area)``.
    """
    subs = {}
    area = 0.0
    for s in d.subcomponents:
      base, count = split_range(s.get("name", ""), names)
      attrs = {k: names[k] for k in INHERITED if k in names}
      local = dict(names)
      for k, v in (s.get("attributes") or {}).items():
        # Later attributes may name earlier ones (``mantissa: w - exponent``).
        attrs[k] = local[k] = self._attr(v, local)
      energies, sub_area = self.component(
          str(s.get("class")), f"{component}.{base}", attrs, ctx, depth + 1)
      n = 1.0 if count is None else count
      scale = 1.0 if s.get("area_scale") is None else _value(
          s["area_scale"], names)
      subs[base] = (energies, n)
      area = area + n * sub_area * scale
    return subs, area

  def _action_energy(self, d: Definition, action: Mapping, subs: dict,
                     names: dict):
    """Energy of one compound action: the subcomponent actions it maps to,
    each times its copies (all, or the ``name[lo..hi]`` range given) and
    its ``energy_scale``."""
    total = 0.0
    for ref in action.get("subcomponents") or ():
      ref = self._mapping_entry(d, ref, "actions.subcomponents")
      base, count = split_range(ref.get("name", ""), names)
      if base not in subs:
        raise SpecError(
            f"action '{action.get('name')}' of class '{d.name}' uses unknown "
            f"subcomponent '{base}'", path=f"compound_components.{d.name}",
            where=d.where or self.where)
      energies, n_all = subs[base]
      n = n_all if count is None else count
      for act in ref.get("actions") or ():
        act = self._mapping_entry(d, act, "actions.subcomponents.actions")
        aname = str(act.get("name"))
        if aname not in energies:
          raise SpecError(
              f"subcomponent '{base}' of class '{d.name}' has no action "
              f"'{aname}' (it has: {', '.join(sorted(energies))})",
              path=f"compound_components.{d.name}.actions",
              where=d.where or self.where)
        scale = 1.0 if act.get("energy_scale") is None else _value(
            act["energy_scale"], names)
        total = total + n * scale * energies[aname]
    return total

  def _mapping_entry(self, d: Definition, entry, path: str):
    """``entry`` of a compound class's action lists, which must be a
    mapping (``{name: ..., ...}``), not a bare value."""
    if not isinstance(entry, Mapping):
      raise SpecError(
          f"compound class '{d.name}' has {entry!r} where a mapping "
          "(name: ..., with its fields) is expected",
          path=f"compound_components.{d.name}.{path}",
          where=d.where or self.where,
          hint="Write each action as '- name: read' with its "
               "subcomponents, as Accelergy's compound component format "
               "does.")
    return entry

  @staticmethod
  def _attr(expr, names):
    """An attribute value: a number, a name's value, an expression, or the
    text itself when it is none of these (``45nm``, ``LPDDR4``)."""
    if not isinstance(expr, str):
      return expr
    text = expr.strip()
    if text in names:
      return names[text]
    try:
      return expressions.evaluate(text, names)
    except expressions.ExpressionError:
      return expr


# ------------------------------------------------------- built-in compounds

def _address_generator(a: Attrs, ctx: Context):
  """Adder of ``log2(depth)`` bits (at least 1) stepping the address."""
  bits = jnp.maximum(1.0, jnp.log2(jnp.maximum(a.num("depth"), 1.0)))
  return prim.int_adder(Attrs(a.component + ".address_generator",
                              {"width": bits}, a.where), ctx)


def smartbuffer_sram(a: Attrs, ctx: Context):
  """An SRAM plus one address generator per read and one per write."""
  s, area = prim.sram(a, ctx)
  g, g_area = _address_generator(a, ctx)
  out = {k: s[k] + g["add"] for k in ("read", "write", "update")}
  out["leak"] = s["leak"] + 2.0 * g["leak"]
  return out, area + 2.0 * g_area


def smartbuffer_rf(a: Attrs, ctx: Context):
  """Register-file buffer as the Timeloop/Accelergy exercises define it.

  The storage is a register file of at least 32 bits x 64 entries: an
  access reads ``width`` register bits and compares the address against
  every entry (one 32-bit Aladdin comparator each; writes cost only the
  comparison, as Accelergy's register charges reads).  Smaller buffers are
  scaled from it, energy by ``width/32 * (depth/64)^0.78`` (CACTI's rule
  of thumb), area and leakage by the bits.  One ``log2(depth)``-bit address
  generator per access.
  """
  w, d = a.num("width"), a.num("depth")
  mw, md = jnp.maximum(w, 32.0), jnp.maximum(d, 64.0)
  e_scale = (w / mw) * (d / md) ** prim.DEPTH_ENERGY_EXPONENT
  bits_scale = (w / mw) * (d / md)
  reg, reg_area = prim.aladdin_register(
      Attrs(a.component + ".storage", {"width": mw}, a.where), ctx)
  cmp, cmp_area = prim.aladdin_comparator(
      Attrs(a.component + ".comparator", {}, a.where), ctx)
  g, g_area = _address_generator(a, ctx)
  compare = md * cmp["compare"]
  out = {"read": e_scale * (reg["read"] + compare) + g["add"],
         "write": e_scale * (reg["write"] + compare) + g["add"]}
  out["update"] = out["write"]
  out["leak"] = (bits_scale * (md * reg["leak"] + md * cmp["leak"])
                 + 2.0 * g["leak"])
  area = bits_scale * (md * reg_area + md * cmp_area) + 2.0 * g_area
  return out, area


def intmac(a: Attrs, ctx: Context):
  """Integer MAC (Aladdin): a ``multiplier_width`` (or ``width``/
  ``datawidth``) multiplier and an adder of ``adder_width`` bits (default:
  the multiplier's width, as Accelergy's Aladdin MAC)."""
  m = a.num("multiplier_width", "datawidth", "width")
  return _mac(a, ctx, m, prim.int_multiplier, prim.aladdin_adder)


def fpmac(a: Attrs, ctx: Context):
  """Float MAC (Aladdin): ``multiplier_width`` and ``adder_width`` bit
  float units (or ``exponent`` + ``mantissa``)."""
  if a.has("exponent") and a.has("mantissa"):
    m = a.num("exponent") + a.num("mantissa")
  else:
    m = a.num("multiplier_width", "datawidth", "width")
  return _mac(a, ctx, m, prim.fp_multiplier, prim.fp_adder)


def _mac(a: Attrs, ctx: Context, m, multiplier, adder):
  """A MAC as a ``m``-bit multiplier plus an ``adder_width``-bit adder
  (default ``m``): compute = multiply + add; leak and area summed."""
  add = a.num("adder_width", default=m)
  mul, mul_area = multiplier(
      Attrs(a.component + ".multiplier", {"width": m}, a.where), ctx)
  ad, ad_area = adder(
      Attrs(a.component + ".adder", {"width": add}, a.where), ctx)
  c = mul["multiply"] + ad["add"]
  return {"compute": c, "leak": mul["leak"] + ad["leak"]}, mul_area + ad_area


BUILTIN_COMPOUNDS: dict[str, Callable] = {
    "smartbuffer_SRAM": smartbuffer_sram,
    "smartbuffer_RF": smartbuffer_rf,
    "intmac": intmac,
    "fpmac": fpmac,
}
