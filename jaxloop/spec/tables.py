"""Reads Accelergy's energy (ERT) and area (ART) reference tables."""
from __future__ import annotations

import math

from jaxloop.spec import yamlio
from jaxloop.spec.diagnostics import (describe, fail, join, require_list,
                                      require_mapping, suggest)
from jaxloop.spec.types import ActionEnergy, AreaTable, EnergyTable


def _tables(node: object, key: str, path: str) -> tuple[list, str, str]:
  """The ``tables`` list of ``{ERT: {version, tables}}`` or its inner part.

  Returns:
    ``(tables, key path of the list, file:line of the table's mapping)``.
  """
  node = require_mapping(node, path=path, what=f"a mapping with '{key}' or "
                         "'tables'")
  if key in node:
    parent = node
    node = require_mapping(node[key], path=path, parent=parent, key=key)
  if "tables" not in node:
    raise fail("missing 'tables'", path=join(path, "tables"), node=node,
               hint=_near_miss(node, "tables") or
               f"An {key} looks like: {key}: {{version: 0.4, tables: "
               "[{name: ..., ...}]}")
  tables = require_list(node["tables"], path=join(path, "tables"),
                        parent=node, key="tables")
  return tables, join(path, "tables"), yamlio.where(node)


def _near_miss(node: dict, wanted: str) -> str:
  """``Found 'energie'. Did you mean 'energy'?`` for a misspelt key."""
  for k in node:
    if suggest(k, [wanted]):
      return f"Found '{k}'. Did you mean '{wanted}'?"
  return ""


def _number(value: object, path: str, node: dict, key: str) -> float:
  """A finite, non-negative number (energies and areas)."""
  if isinstance(value, str):
    try:
      value = float(value)
    except ValueError:
      pass
  if isinstance(value, bool) or not isinstance(value, (int, float)) or \
      not math.isfinite(value) or value < 0:
    raise fail(f"expected a non-negative number, found {describe(value)}",
               path=path, node=node, key=key if key in node else None)
  return float(value)


def parse_ert(node: object, path: str = "ERT") -> EnergyTable:
  """Builds an EnergyTable from ``{ERT: {tables: [{name, actions}]}}``.

  Actions are ``{name, arguments, energy}``; ``arguments`` may be missing
  (older Accelergy output).
  """
  tables, tpath, source = _tables(node, "ERT", path)
  entries = []
  for i, t in enumerate(tables):
    ipath = join(tpath, i)
    t = require_mapping(t, path=ipath, parent=tables, key=i,
                        what="a table {name, actions}")
    name = t.get("name")
    if not isinstance(name, str) or not name:
      raise fail(f"expected a component name, found {describe(name)}",
                 path=join(ipath, "name"), node=t)
    if "actions" not in t:
      raise fail("missing 'actions'", path=join(ipath, "actions"), node=t,
                 hint=_near_miss(t, "actions") or
                 "List the component's actions: [{name: read, energy: ...}]")
    actions = require_list(t.get("actions"), path=join(ipath, "actions"),
                           parent=t, key="actions",
                           what="a list of {name, arguments, energy}")
    out = []
    for j, a in enumerate(actions):
      apath = join(join(ipath, "actions"), j)
      a = require_mapping(a, path=apath, parent=actions, key=j,
                          what="an action {name, arguments, energy}")
      aname = a.get("name")
      if not isinstance(aname, str) or not aname:
        raise fail(f"expected an action name, found {describe(aname)}",
                   path=join(apath, "name"), node=a)
      if "energy" not in a:
        raise fail("missing 'energy'", path=join(apath, "energy"), node=a,
                   hint=_near_miss(a, "energy") or
                   "Give the action's energy in pJ, e.g. energy: 1.5")
      args = a.get("arguments") or {}
      args = require_mapping(args, path=join(apath, "arguments"), parent=a,
                             key="arguments")
      out.append(ActionEnergy(
          action=aname,
          energy=_number(a["energy"], join(apath, "energy"), a, "energy"),
          arguments=yamlio.plain(args)))
    entries.append((name, tuple(out)))
  return EnergyTable(entries=tuple(entries), source=source)


def parse_art(node: object, path: str = "ART") -> AreaTable:
  """Builds an AreaTable from ``{ART: {tables: [{name, area}]}}``."""
  tables, tpath, source = _tables(node, "ART", path)
  entries = []
  for i, t in enumerate(tables):
    ipath = join(tpath, i)
    t = require_mapping(t, path=ipath, parent=tables, key=i,
                        what="a table {name, area}")
    name = t.get("name")
    if not isinstance(name, str) or not name:
      raise fail(f"expected a component name, found {describe(name)}",
                 path=join(ipath, "name"), node=t)
    if "area" not in t:
      raise fail("missing 'area'", path=join(ipath, "area"), node=t,
                 hint=_near_miss(t, "area") or
                 "Give the component's area in um^2, e.g. area: 120.0")
    entries.append((name, _number(t["area"], join(ipath, "area"), t,
                                  "area")))
  return AreaTable(entries=tuple(entries), source=source)


def _name_parts(name: str) -> tuple[str, str, str]:
  """``System_top_level.GlobalBuffer[1..16]`` -> (``System_top_level``,
  ``GlobalBuffer``, ``[1..16]``)."""
  base, bracket, rng = name.partition("[")
  prefix, _, bare = base.rpartition(".")
  return prefix, bare, bracket + rng


def name_difference(ours: str, theirs: str) -> str:
  """How a table entry's name differs from the architecture's, in words:
  ``the top-level name ('PE_top_level' there, 'System_top_level' here)``,
  ``the instance range ([1..1] there, [1..16] here)``."""
  (p1, _, r1), (p2, _, r2) = _name_parts(ours), _name_parts(theirs)
  parts = []
  if p1 != p2:
    parts.append(f"the top-level name ('{p2 or '(none)'}' there, "
                 f"'{p1 or '(none)'}' here)")
  if r1 != r2:
    parts.append(f"the instance range ({r2 or 'none'} there, "
                 f"{r1 or 'none'} here)")
  return " and ".join(parts) or "the name"


def match_entry(entries, name: str, *, table: str = "ERT",
                source: str = ""):
  """The entry of a table for the component ``name`` (its ``ert_name``).

  Accelergy names entries ``<top>.<component>[1..N]``.  An entry of exactly
  that name wins; else the one whose bare component name matches (a table
  written for a differently named top level, or another instance count),
  preferring one with the same instance range.

  Args:
    entries: ``((name, value), ...)`` of an EnergyTable or AreaTable.
    name: the component's name in the architecture.
    table: ``ERT`` or ``ART``, for messages.
    source: the table's file, for messages.

  Returns:
    ``(entry name, value)``, or None when no entry has that bare name.

  Raises:
    SpecError: several entries match the bare name equally well.
  """
  for key, value in entries:
    if key == name:
      return key, value
  _, bare, rng = _name_parts(name)
  found = [(k, v) for k, v in entries if _name_parts(k)[1] == bare]
  same_range = [(k, v) for k, v in found if _name_parts(k)[2] == rng]
  found = same_range or found
  if len(found) > 1:
    raise fail(f"{len(found)} entries could be component '{name}' "
               f"({', '.join(k for k, _ in found)}), none named exactly so",
               path=f"{table}.tables[{bare}]", where=source,
               hint=f"Keep one entry for '{bare}', or name it '{name}' as "
               "Accelergy would for this architecture.")
  return found[0] if found else None
