"""Architecture sweeps: many architectures mapped at once.

* :mod:`.points`: axes (template variables, ``variables.NAME``,
  ``COMPONENT.ATTRIBUTE``) and grid / random / Latin-hypercube points;
* :mod:`.arch`: one point's Workload (attributes edited in the YAML
  before it is parsed, so capacities and estimated energies follow);
* :mod:`.batched`: the model with ArchParams ``[P, ...]`` (vmap over
  points, split over devices), compiled once per structure;
* :mod:`.search`: each point's mapping search, all points side by side;
* :mod:`.run`: points x layers -> rows; :mod:`.distributed`: over
  processes; :mod:`.pareto`, :mod:`.outputs`: front, tables, plots;
* :mod:`.cli`: ``jaxloop sweep``.
"""
from jaxloop.sweep.layers import Layer, network_layers
from jaxloop.sweep.points import Axis, make_points, parse_grid, parse_range
from jaxloop.sweep.run import SweepResult, run_sweep
from jaxloop.sweep.search import SearchSettings

__all__ = ["Axis", "Layer", "SearchSettings", "SweepResult", "make_points",
           "network_layers", "parse_grid", "parse_range", "run_sweep"]
