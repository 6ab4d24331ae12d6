"""Shared pieces of the architecture readers: leaves, state, attributes.

Both architecture forms are walked into a list of :class:`Leaf` (one per
component, outermost first) while a :class:`State` carries replication and
inherited attributes down the tree.
"""
from __future__ import annotations

import dataclasses
import math
import re
from typing import Mapping, Optional

from jaxloop.errors import UnsupportedFeatureError
from jaxloop.spec import expr
from jaxloop.spec import yamlio
from jaxloop.spec.diagnostics import describe, fail, join, require_mapping

DUMMY_CLASS = "dummy_storage"
RANGE_RE = re.compile(r"^(?P<base>[^\[\]]+)\[(?P<lo>\d+)\.\.(?P<hi>\d+)\]$")


@dataclasses.dataclass
class RawConstraint:
  """A constraint written on a v0.4 node, not yet validated.

  Attributes:
    item: the directive as a mapping ``{target, type, ...}``.
    path: key path for messages.
  """
  item: dict
  path: str


@dataclasses.dataclass
class State:
  """Replication and inherited attributes while walking down the tree."""
  instances: int = 1
  mesh_x: int = 1
  mesh_y: int = 1
  attrs: dict = dataclasses.field(default_factory=dict)  # resolved
  raw_attrs: dict = dataclasses.field(default_factory=dict)  # as written
  path: tuple = ()


@dataclasses.dataclass
class Leaf:
  """One component found while walking, before its fields are typed.

  ``attrs`` are the evaluated attributes (inherited ones included),
  ``raw_attrs`` the same as written, ``failures`` the attribute expressions
  that could not be evaluated (reported only if a typed field needs them).
  """
  name: str
  cls: str
  instances: int
  mesh_x: int
  mesh_y: int
  attrs: dict
  raw_attrs: dict
  ert_name: str
  node: dict
  path: str
  required_actions: tuple = ()
  is_dummy: bool = False
  failures: dict = dataclasses.field(default_factory=dict)
  subclass: str = ""


def subclass_of(node: dict, path: str) -> str:
  """A component's ``subclass`` (the class Accelergy estimates it with when
  ``class`` is Timeloop's generic ``storage``); empty when absent."""
  sub = node.get("subclass")
  if sub is None:
    return ""
  if not isinstance(sub, str) or not sub.strip():
    raise fail(f"expected a class name, found {describe(sub)}",
               path=join(path, "subclass"), node=node, key="subclass",
               hint="e.g. subclass: smartbuffer_RF")
  return sub.strip()


def resolved_attrs(raw: object, outer: Mapping[str, object], path: str,
                    parent: object) -> tuple[dict, dict]:
  raw = require_mapping(raw, path=join(path, "attributes"), parent=parent,
                        key="attributes")
  raw = {k: v for k, v in raw.items() if k != "version"}
  values, failures = expr.resolve_all(raw, outer)
  return values, failures


def inherit(state: State, raw: object, variables: Mapping[str, object],
             path: str, parent: object) -> None:
  outer = {**variables, **state.attrs}
  values, _ = resolved_attrs(raw, outer, path, parent)
  state.attrs = {**state.attrs, **values}
  state.raw_attrs = {**state.raw_attrs,
                     **{k: v for k, v in raw.items() if k != "version"}}


def leaf_attrs(node: dict, state: State, variables: Mapping[str, object],
                path: str) -> tuple[dict, dict, dict]:
  raw = node.get("attributes") or {}
  outer = {**variables, **state.attrs}
  own, failures = resolved_attrs(raw, outer, path, node)
  attrs = {**state.attrs, **own}
  raw_all = {**state.raw_attrs,
             **{k: v for k, v in raw.items() if k != "version"}}
  return attrs, raw_all, failures


# ---------------------------------------------------------------------------
# Subtree (flattened / v0.3) form.

# v0.3 attribute names and their v0.4 names (Timeloop reads both; the v0.4
# compound classes that Accelergy estimates with, e.g. smartbuffer_RF with
# ``width: must_specify`` and ``memory_width: max(32, width)``, know only the
# v0.4 ones).
V03_NAMES = (("memory_depth", "depth"), ("memory_width", "width"),
             ("word_bits", "datawidth"), ("word-bits", "datawidth"))


def v04_names(attrs: dict) -> dict:
  """``attrs`` with v0.3 names (``memory_depth``, ``memory_width``,
  ``word_bits``) renamed to v0.4 (``depth``, ``width``, ``datawidth``)
  where the v0.4 name is absent: the conversion a v0.3 architecture needs
  to go with v0.4 component classes."""
  out = dict(attrs)
  for old, new in V03_NAMES:
    if old in out and new not in out:
      out = {(new if k == old else k): v for k, v in out.items()}
  return out



def split_range(name: object, path: str, node: dict) -> tuple[str, int]:
  if not isinstance(name, str) or not name:
    raise fail(f"expected a component name, found {describe(name)}",
               path=join(path, "name"), node=node, key="name")
  m = RANGE_RE.match(name.strip())
  if not m:
    if "[" in name or "]" in name:
      raise fail(f"cannot read the instance range in '{name}'",
                 path=join(path, "name"), node=node, key="name",
                 hint="Write ranges as Name[1..16] (or Name[0..15]).")
    return name.strip(), 1
  lo, hi = int(m.group("lo")), int(m.group("hi"))
  if hi < lo:
    raise fail(f"expected a range Name[lo..hi] with lo <= hi, found an "
               f"empty range in '{name}'", path=join(path, "name"),
               node=node, key="name")
  if hi - lo + 1 > 2**31 - 1:
    raise fail(f"expected at most {2**31 - 1} instances, found "
               f"{hi - lo + 1} in '{name}'", path=join(path, "name"),
               node=node, key="name")
  return m.group("base").strip(), hi - lo + 1


def mesh(attrs: dict, instances: int, path: str, node: dict,
          failures: dict) -> tuple[int, int]:
  mx = opt_int(attrs, ("meshX", "mesh_x"), path, node, failures)
  my = opt_int(attrs, ("meshY", "mesh_y"), path, node, failures)
  if mx is None and my is None:
    return instances, 1
  if mx is None:
    mx = instances // my if my and instances % my == 0 else None
  if my is None:
    my = instances // mx if mx and instances % mx == 0 else None
  if mx is None or my is None or mx * my != instances:
    raise fail(f"meshX={attrs.get('meshX')} meshY={attrs.get('meshY')} do not "
               f"multiply to the {instances} instances", path=join(
                   path, "attributes"), node=node, key="attributes",
               hint="meshX * meshY must equal the instance count.")
  return mx, my


def opt_num(attrs: dict, keys: tuple, path: str, node: dict,
             failures: dict) -> Optional[float]:
  for k in keys:
    if k in attrs and attrs[k] is not None:
      v = attrs[k]
      if isinstance(v, bool) or not isinstance(v, (int, float)):
        err = failures.get(k)
        if err is not None and str(err).startswith("unsupported"):
          raise UnsupportedFeatureError(
              f"attribute expression {v!r} ({err})",
              path=join(path, f"attributes.{k}"),
              where=yamlio.where(node.get("attributes"), k))
        extra = f" ({err})" if err is not None else ""
        raise fail(f"attribute '{k}': expected a number, found "
                   f"{describe(v)}{extra}",
                   path=join(path, f"attributes.{k}"),
                   node=node.get("attributes") or node, key=k,
                   hint=("Define it under top-level 'variables:' or in a "
                         "container's attributes." if err is not None and
                         err.unknown else ""))
      return v
  return None


def opt_int(attrs: dict, keys: tuple, path: str, node: dict,
             failures: dict) -> Optional[int]:
  v = opt_num(attrs, keys, path, node, failures)
  if v is None:
    return None
  if isinstance(v, float):
    if math.isinf(v):
      return None
    if not v.is_integer():
      raise fail(f"attribute '{keys[0]}': expected an integer, found {v!r}",
                 path=join(path, f"attributes.{keys[0]}"),
                 node=node.get("attributes") or node, key=keys[0])
    v = int(v)
  if v < 0:
    raise fail(f"attribute '{keys[0]}': expected a non-negative integer, "
               f"found {v!r}", path=join(path, f"attributes.{keys[0]}"),
               node=node.get("attributes") or node, key=keys[0])
  return v
