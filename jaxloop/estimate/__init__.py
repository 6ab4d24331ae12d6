"""Energy and area estimates without Accelergy.

* :func:`estimate_tables` -- ERT and ART for a spec's architecture, named
  like Accelergy's (``<top>.<level>[1..N]``), from built-in models;
* :func:`component` -- energies per action and area of one component, a
  smooth jax function of its numeric attributes (``depth``, ``width``...);
* :func:`write_tables` -- Accelergy-format ``ERT.yaml``/``ART.yaml``.

Primitive models and their published sources: :mod:`.primitives`;
technology scaling: :mod:`.technology`; compound classes: :mod:`.compound`.
"""
from __future__ import annotations

from typing import Mapping, Optional

from jaxloop.estimate import tables as _tables
from jaxloop.estimate.compound import Definition, Estimator
from jaxloop.estimate.primitives import Context
from jaxloop.estimate.tables import tables_yaml, write_tables
from jaxloop.precision import exact

# Estimates are float64 whatever the caller's JAX setting.
estimate_tables = exact(_tables.estimate_tables)
level_energies = exact(_tables.level_energies)


def component(cls: str, attributes: Mapping, technology: object = "45nm",
              cycle_seconds: float = 1e-9,
              definitions: Optional[dict[str, Definition]] = None,
              name: str = "component"):
  """Energies (pJ per action) and area (um^2) of one component.

  Args:
    cls: class name (``SRAM``, ``regfile``, ``DRAM``, ``intmac``...).
    attributes: its attributes; numeric ones may be jax scalars (traced).
    technology: node, e.g. ``"32nm"``.
    cycle_seconds: clock period (leakage per cycle).
    definitions: compound classes (from a spec) taking precedence.
    name: component name for error messages.

  Returns:
    ``({action: energy}, area)``, jax scalars (traceable: float64 when the
    trace has 64-bit types on, see :mod:`jaxloop.precision`).
  """
  from jaxloop.estimate import technology as tech
  node = tech.parse_node(technology) or tech.REFERENCE_NM
  attrs = dict(attributes)
  attrs.setdefault("technology", f"{node:g}nm")
  return Estimator(definitions).component(
      cls, name, attrs, Context(node=node, cycle_seconds=cycle_seconds))


__all__ = ["component", "estimate_tables", "level_energies", "tables_yaml",
           "write_tables", "Estimator", "Context"]
