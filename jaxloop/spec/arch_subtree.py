"""Walks the subtree form of ``architecture:`` (flattened input, v0.3).

``{subtree: [{name, attributes, local: [...], subtree: [...]}]}``: a name
``X[1..N]`` gives N instances per parent instance; a subtree's attributes
are inherited by everything in it; locals come before (above) subtrees.
v0.3 attribute names (``memory_depth``, ...) are read as their v0.4 names.
"""
from __future__ import annotations

from typing import Mapping

from jaxloop.spec.archtree import (DUMMY_CLASS, Leaf, State, inherit,
                                   leaf_attrs, mesh, split_range, subclass_of,
                                   v04_names)
from jaxloop.spec.diagnostics import (check_keys, describe, fail, join,
                                      require_list, require_mapping)

SUBTREE_KEYS = ("name", "attributes", "local", "subtree", "description")
LOCAL_KEYS = ("name", "class", "subclass", "attributes", "required_actions",
              "enabled", "area_scale", "energy_scale", "description",
              "constraints")


def walk_subtree_body(node: dict, state: State, leaves: list,
                       variables: Mapping[str, object], path: str) -> None:
  local = node.get("local") or []
  local = require_list(local, path=join(path, "local"), parent=node,
                       key="local", what="a list of components")
  for i, comp in enumerate(local):
    cpath = join(join(path, "local"), i)
    comp = require_mapping(comp, path=cpath, parent=local, key=i,
                           what="a component {name, class, attributes}")
    check_keys(comp, LOCAL_KEYS, path=cpath, what="a component")
    if comp.get("enabled", True) is False:
      continue
    name, count = split_range(comp.get("name"), cpath, comp)
    cls = comp.get("class")
    if not isinstance(cls, str) or not cls:
      raise fail(f"expected a class name, found {describe(cls)}",
                 path=join(cpath, "class"), node=comp,
                 key="class" if "class" in comp else None,
                 hint="e.g. class: SRAM, class: DRAM, class: intmac")
    attrs, raw_attrs, failures = leaf_attrs(comp, state, variables, cpath)
    attrs, raw_attrs = v04_names(attrs), v04_names(raw_attrs)
    instances = state.instances * count
    mesh_x, mesh_y = mesh(attrs, instances, cpath, comp, failures)
    leaves.append(Leaf(
        name=name, cls=cls, instances=instances, mesh_x=mesh_x,
        mesh_y=mesh_y, attrs=attrs, raw_attrs=raw_attrs,
        ert_name=".".join(state.path + (str(comp["name"]).strip(),)),
        node=comp, path=cpath,
        required_actions=tuple(comp.get("required_actions") or ()),
        is_dummy=cls == DUMMY_CLASS, failures=failures,
        subclass=subclass_of(comp, cpath)))
  subs = node.get("subtree") or []
  subs = require_list(subs, path=join(path, "subtree"), parent=node,
                      key="subtree", what="a list of subtrees")
  for i, sub in enumerate(subs):
    spath = join(join(path, "subtree"), i)
    sub = require_mapping(sub, path=spath, parent=subs, key=i,
                          what="a subtree {name, attributes, local}")
    check_keys(sub, SUBTREE_KEYS, path=spath, what="a subtree")
    _, count = split_range(sub.get("name"), spath, sub)
    child = State(instances=state.instances * count, mesh_x=state.mesh_x,
                   mesh_y=state.mesh_y, attrs=dict(state.attrs),
                   raw_attrs=dict(state.raw_attrs),
                   path=state.path + (str(sub["name"]).strip(),))
    if "attributes" in sub:
      inherit(child, sub["attributes"], variables, spath, sub)
    walk_subtree_body(sub, child, leaves, variables, spath)
