"""Energy and area tables for a whole architecture, and their YAML form.

:func:`estimate_tables` plays Accelergy's part: for every storage level and
the arithmetic level of a :class:`~jaxloop.spec.types.Spec` it estimates the
actions Timeloop reads (``read``, ``write``, ``update``, ``leak``;
``compute``, ``leak``) and the area, under the level's ``ert_name``
(``<top>.<name>[1..N]``), so the result drops in wherever an Accelergy
ERT/ART would.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Optional

import numpy as np
import yaml

from jaxloop import errors
from jaxloop.errors import SpecError
from jaxloop.estimate import technology as tech
from jaxloop.estimate.compound import Definition, Estimator, parse_definitions
from jaxloop.estimate.primitives import Context
from jaxloop.spec import types as st

SOURCE = "jaxloop.estimate (built-in models, no Accelergy)"
STORAGE_ACTIONS = ("read", "write", "update", "leak")
COMPUTE_ACTIONS = ("compute", "leak")
_NO_TECHNOLOGY = ("DRAM", "dram", "dummy_storage")


class _TolerantLoader(yaml.SafeLoader):
  """SafeLoader that reads any ``!Tag`` node as its plain value."""


def _any_tag(loader, suffix, node):
  del suffix
  if isinstance(node, yaml.MappingNode):
    return loader.construct_mapping(node, deep=True)
  if isinstance(node, yaml.SequenceNode):
    return loader.construct_sequence(node, deep=True)
  return loader.construct_scalar(node)


_TolerantLoader.add_multi_constructor("!", _any_tag)


def compound_definitions(paths: Iterable[str]) -> dict[str, Definition]:
  """``compound_components`` classes found in the files (later files win).

  Files that are not plain YAML (Jinja templates) are skipped.
  """
  out: dict[str, Definition] = {}
  for p in paths:
    try:
      text = Path(p).read_text()
    except OSError:
      continue
    if "compound_components" not in text:
      continue
    try:
      doc = yaml.load(text, Loader=_TolerantLoader)  # noqa: S506 (safe)
    except yaml.YAMLError:
      continue
    if isinstance(doc, dict) and doc.get("compound_components"):
      out.update(parse_definitions(doc["compound_components"], str(p)))
  return out


def _node(attrs: dict, arch: st.Architecture, cls: str, component: str,
          where: str) -> float:
  for value in (attrs.get("technology"), arch.technology):
    nm = tech.parse_node(value)
    if nm is not None:
      if not tech.check_node(nm):
        raise SpecError(
            f"component '{component}' has technology {value!r}, outside the "
            "modelled 7-180 nm", path=f"architecture.{component}.attributes."
            "technology", where=where,
            hint="Supported nodes: " + ", ".join(
                f"{n}nm" for n in tech.SUPPORTED_NM))
      return nm
  if cls in _NO_TECHNOLOGY:
    return tech.REFERENCE_NM
  raise SpecError(
      f"component '{component}' (class '{cls}') needs attribute 'technology'",
      path=f"architecture.{component}.attributes.technology", where=where,
      hint="Add e.g. 'technology: 45nm' to the component or the top level.")


def level_energies(spec: st.Spec, estimator: Optional[Estimator] = None):
  """Per level, ``(ert_name, cls, {action: pJ}, area_um2)`` (jax scalars);
  ``cls`` is the class estimated (the ``subclass`` when there is one).

  The arithmetic level comes last.
  """
  arch = spec.arch
  where = ", ".join(spec.sources)
  if estimator is None:
    estimator = Estimator(compound_definitions(spec.sources), where)
  out = []
  levels = [(lvl, STORAGE_ACTIONS) for lvl in arch.storage
            if not lvl.is_dummy]
  levels.append((arch.arithmetic, COMPUTE_ACTIONS))
  for lvl, wanted in levels:
    acts, area = level_actions(spec, lvl, estimator, wanted=wanted)
    out.append((lvl.ert_name or lvl.name, lvl.energy_class, acts, area))
  return out


def level_actions(spec: st.Spec, lvl, estimator: Estimator,
                  attributes: Optional[dict] = None,
                  wanted=STORAGE_ACTIONS):
  """``({action: pJ}, area_um2)`` of one level (storage or arithmetic) of
  ``spec``, the actions Timeloop reads (``wanted``); ``attributes``
  override the level's own (jax scalars allowed: traceable, e.g. a
  ``depth`` under ``jax.grad``)."""
  arch = spec.arch
  where = ", ".join(spec.sources)
  # Accelergy estimates a component with its subclass when it has one
  # (``class: storage, subclass: smartbuffer_RF``).
  cls = lvl.energy_class
  attrs = {**dict(lvl.attributes), **(attributes or {})}
  node = _node(attrs, arch, cls, lvl.name, where)
  attrs["technology"] = f"{node:g}nm"
  attrs.setdefault("global_cycle_seconds", arch.global_cycle_seconds)
  ctx = Context(node=node, cycle_seconds=float(arch.global_cycle_seconds))
  seen = len(estimator.fallbacks)
  energies, area = estimator.component(cls, lvl.name, attrs, ctx)
  _warn_fallbacks(estimator.fallbacks[seen:], where)
  return _timeloop_actions(energies, wanted, lvl.name, cls, where), area


def _warn_fallbacks(fallbacks, where: str) -> None:
  """One warning per compound class estimated without its definition."""
  for component, cls, used in fallbacks:
    top = component.split(".", 1)[0]
    errors.warn(
        f"component '{component}' has class '{cls}', which no "
        "compound_components definition in the inputs defines; estimated "
        f"with jaxloop's built-in {cls} ({used})",
        path=f"architecture.{top}.class", where=where,
        hint=f"add the definition of '{cls}' (Accelergy's "
        "compound_components) to the inputs, or pass an ERT",
        stacklevel=4)


def _timeloop_actions(energies: dict, wanted, name: str, cls: str,
                      where: str) -> dict:
  if "compute" in wanted:
    for alias in ("compute", "mac", "mac_random", "multiply", "mult"):
      if alias in energies:
        return {"compute": energies[alias],
                "leak": energies.get("leak", 0.0)}
    raise SpecError(f"class '{cls}' of '{name}' has no compute action "
                    f"(it has: {', '.join(sorted(energies))})",
                    path=f"architecture.{name}.class", where=where)
  if "read" not in energies:
    raise SpecError(f"class '{cls}' of '{name}' has no read action "
                    f"(it has: {', '.join(sorted(energies))})",
                    path=f"architecture.{name}.class", where=where)
  read = energies["read"]
  write = energies.get("write", read)
  return {"read": read, "write": write,
          "update": energies.get("update", write),
          "leak": energies.get("leak", 0.0)}


def estimate_tables(spec: st.Spec) -> tuple[st.EnergyTable, st.AreaTable]:
  """Built-in ERT and ART for ``spec``'s architecture (no Accelergy).

  Returns:
    ``(EnergyTable, AreaTable)``; energies in pJ per action, areas in
    um^2, both with ``source`` saying they were estimated.

  Raises:
    SpecError: an unknown component class or a missing attribute, naming the
      component and the attribute.
  """
  entries, areas = [], []
  for name, _, acts, area in level_energies(spec):
    entries.append((name, tuple(
        st.ActionEnergy(action=k, energy=float(np.asarray(v)))
        for k, v in acts.items())))
    areas.append((name, float(np.asarray(area))))
  return (st.EnergyTable(entries=tuple(entries), source=SOURCE),
          st.AreaTable(entries=tuple(areas), source=SOURCE))


def tables_yaml(ert: st.EnergyTable, art: st.AreaTable) -> tuple[str, str]:
  """Accelergy-format YAML text of the two tables (ERT, ART)."""
  e = {"ERT": {"version": 0.4, "tables": [
      {"name": name, "actions": [
          {"name": a.action, "arguments": dict(a.arguments),
           "energy": float(f"{a.energy:.9g}")} for a in actions]}
      for name, actions in ert.entries]}}
  a = {"ART": {"version": 0.4, "tables": [
      {"name": name, "area": float(f"{area:.9g}")}
      for name, area in art.entries]}}
  return (yaml.safe_dump(e, sort_keys=False),
          yaml.safe_dump(a, sort_keys=False))


def write_tables(ert: st.EnergyTable, art: st.AreaTable,
                 outdir: str | os.PathLike) -> tuple[Path, Path]:
  """Writes ``outdir/ERT.yaml`` and ``outdir/ART.yaml``; returns the paths."""
  out = Path(outdir)
  out.mkdir(parents=True, exist_ok=True)
  e_text, a_text = tables_yaml(ert, art)
  (out / "ERT.yaml").write_text(e_text)
  (out / "ART.yaml").write_text(a_text)
  return out / "ERT.yaml", out / "ART.yaml"
