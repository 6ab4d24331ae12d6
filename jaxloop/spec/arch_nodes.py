"""Walks the v0.4 node form of ``architecture:`` (``nodes: [...]``).

``!Container`` attributes are inherited by the nodes after it; a container
with ``spatial: {meshX, meshY}`` becomes the storage-less level
``inter_<name>_spatial`` and replicates everything below it.
``!Parallel`` branches start from the same state; what one branch keeps
(``constraints.dataspace.keep``, also on ``!Nothing``), its siblings
bypass.  Node ``constraints`` are collected as raw directives.
"""
from __future__ import annotations

import copy

from jaxloop.spec import expr
from jaxloop.spec import yamlio
from jaxloop.spec.archtree import (DUMMY_CLASS, Leaf, RawConstraint, State,
                                   inherit, leaf_attrs, subclass_of)
from jaxloop.spec.diagnostics import (check_keys, describe, fail, join,
                                      require_list, require_mapping, suggest)

NODE_TAGS = ("Container", "Component", "Parallel", "Hierarchical", "Nothing")
COMPONENT_KEYS = ("name", "class", "subclass", "attributes", "constraints",
                  "required_actions", "enabled", "spatial", "area_scale",
                  "energy_scale", "description")
CONTAINER_KEYS = ("name", "attributes", "constraints", "spatial",
                  "description", "enabled")
GROUP_KEYS = ("nodes", "name", "constraints", "description")
NOTHING_KEYS = ("constraints", "name", "description", "_value")
CONSTRAINT_SECTIONS = ("dataspace", "temporal", "spatial")
# Keys of the v0.3 / flattened subtree form that have no place in a v0.4 node.
V03_KEYS = ("local", "subtree")
MAX_MESH = 2**31 - 1


def _reject_v03_keys(node: dict, path: str, what: str) -> None:
  for key in V03_KEYS:
    if key in node:
      raise fail(f"unknown key '{key}' in {what}: '{key}' belongs to the "
                 "v0.3 subtree form, not to v0.4 nodes",
                 path=join(path, key), node=node, key=key,
                 hint="In v0.4, list components and containers one after "
                 "the other under the architecture's 'nodes:' (children "
                 "follow their container).")


class NodeWalker:
  """Flattens v0.4 ``nodes`` (containers, components, parallel groups)."""

  def __init__(self, variables, leaves, constraints, aliases):
    self.variables = variables
    self.leaves: list[Leaf] = leaves
    self.constraints: list[RawConstraint] = constraints
    self.aliases: dict[str, str] = aliases
    self.top_name = ""
    self.top_attrs: dict = {}
    # Constraint items per leaf name, to extend bypass lists of parallel
    # siblings.
    self._dataspace_items: dict[str, RawConstraint] = {}

  def walk(self, nodes: list, state: State, path: str,
           parallel: bool) -> None:
    """Walks a list of nodes; in a hierarchical list, state flows down."""
    if parallel:
      branches = []
      for i, n in enumerate(nodes):
        start = len(self.leaves)
        keeps = self._walk_one(n, copy.deepcopy(state), join(path, i), nodes,
                               i)
        branches.append((start, len(self.leaves), keeps))
      self._propagate_parallel_bypass(branches)
      return
    for i, n in enumerate(nodes):
      self._walk_one(n, state, join(path, i), nodes, i)

  def _walk_one(self, node: object, state: State, path: str, parent: list,
                index: int) -> set:
    """Handles one node; returns the data spaces it keeps (for !Parallel)."""
    node = require_mapping(node, path=path, parent=parent, key=index,
                           what="a node (!Container, !Component, !Parallel, "
                           "...)")
    tag = node.get("_tag")
    if tag is None:
      tag = "Component" if "class" in node else (
          "Hierarchical" if "nodes" in node else None)
    if tag not in NODE_TAGS:
      found = f"!{tag}" if tag else "an untagged mapping"
      raise fail(f"expected a node tagged !Container, !Component, !Parallel, "
                 f"!Hierarchical or !Nothing; found {found}", path=path,
                 node=parent, key=index,
                 hint=suggest(tag, NODE_TAGS) if tag else
                 "Start the list item with '- !Component'.")
    if tag == "Container":
      return self._container(node, state, path)
    if tag == "Component":
      return self._component(node, state, path)
    if tag in ("Parallel", "Hierarchical"):
      check_keys(node, GROUP_KEYS, path=path, what=f"a !{tag} node")
      if node.get("constraints"):
        raise fail(f"constraints on a !{tag} group are not supported",
                   path=join(path, "constraints"), node=node,
                   key="constraints",
                   hint="Put them on the components inside.")
      children = require_list(node.get("nodes") or [],
                              path=join(path, "nodes"), parent=node,
                              key="nodes")
      before = len(self.leaves)
      self.walk(children, state, join(path, "nodes"),
                parallel=tag == "Parallel")
      keeps = set()
      for leaf in self.leaves[before:]:
        keeps |= self._kept(leaf.name)
      return keeps
    # Nothing: no level, but its keeps bypass parallel siblings.
    check_keys(node, NOTHING_KEYS, path=path, what="a !Nothing node")
    cons = node.get("constraints") or {}
    cons = require_mapping(cons, path=join(path, "constraints"), parent=node,
                           key="constraints")
    ds = cons.get("dataspace") or {}
    keep = ds.get("keep") if isinstance(ds, dict) else None
    if isinstance(keep, str):
      keep = [keep]
    return set(keep) if isinstance(keep, list) else set()

  def _container(self, node: dict, state: State, path: str) -> set:
    _reject_v03_keys(node, path, "a !Container node")
    check_keys(node, CONTAINER_KEYS, path=path, what="a !Container node")
    name = node.get("name")
    if not isinstance(name, str) or not name:
      raise fail(f"expected a container name, found {describe(name)}",
                 path=join(path, "name"), node=node,
                 key="name" if "name" in node else None)
    if "attributes" in node:
      inherit(state, node["attributes"], self.variables, path, node)
    if not self.top_name:
      self.top_name = f"{name}_top_level"
      self.top_attrs = dict(state.attrs)
    cons = node.get("constraints")
    if "spatial" not in node:
      if cons:
        raise fail(f"container '{name}' has constraints but no 'spatial' "
                   "fanout, so there is no level to apply them to",
                   path=join(path, "constraints"), node=node,
                   key="constraints",
                   hint="Add spatial: {meshX: ...} or move the constraints "
                   "to a component.")
      return set()
    mx, my = self._spatial(node, state, path)
    level = f"inter_{name}_spatial"
    attrs = {"width": 1, "depth": 1, "datawidth": 1, "technology": -1,
             "meshX": state.mesh_x, "meshY": state.mesh_y}
    self.leaves.append(Leaf(
        name=level, cls=DUMMY_CLASS, instances=state.instances,
        mesh_x=state.mesh_x, mesh_y=state.mesh_y,
        attrs={**state.attrs, **attrs}, raw_attrs=dict(attrs),
        ert_name=f"{level}[1..{state.instances}]", node=node, path=path,
        is_dummy=True))
    self.aliases[name] = level
    self._constraints(node, level, path)
    state.instances *= mx * my
    state.mesh_x *= mx
    state.mesh_y *= my
    return set()

  def _spatial(self, node: dict, state: State, path: str) -> tuple[int, int]:
    sp = require_mapping(node["spatial"], path=join(path, "spatial"),
                         parent=node, key="spatial",
                         what="a mapping {meshX, meshY}")
    check_keys(sp, ("meshX", "meshY"), path=join(path, "spatial"),
               what="spatial")
    out = []
    for k in ("meshX", "meshY"):
      v = sp.get(k, 1)
      if isinstance(v, str):
        try:
          v = expr.evaluate(v, {**self.variables, **state.attrs})
        except expr.ExprError as e:
          raise fail(f"expected a positive integer, found {describe(v)} "
                     f"({e})", path=join(path, f"spatial.{k}"), node=sp,
                     key=k, hint="Define the name under top-level "
                     "'variables:' or in a container's attributes."
                     if e.unknown else "") from None
      if isinstance(v, float) and v.is_integer():
        v = int(v)
      if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise fail(f"expected a positive integer, found {describe(v)}",
                   path=join(path, f"spatial.{k}"), node=sp, key=k)
      if v > MAX_MESH or state.instances * v > MAX_MESH:
        raise fail(f"expected at most {MAX_MESH} instances, found "
                   f"{k}={v} (giving {state.instances * v})",
                   path=join(path, f"spatial.{k}"), node=sp, key=k)
      out.append(v)
    return out[0], out[1]

  def _component(self, node: dict, state: State, path: str) -> set:
    _reject_v03_keys(node, path, "a !Component node")
    check_keys(node, COMPONENT_KEYS, path=path, what="a !Component node")
    if node.get("enabled", True) is False:
      return set()
    name = node.get("name")
    if not isinstance(name, str) or not name or "[" in name:
      raise fail(f"expected a component name, found {describe(name)}",
                 path=join(path, "name"), node=node,
                 key="name" if "name" in node else None,
                 hint="v0.4 names carry no instance range; use spatial: "
                 "{meshX: ...} on a container.")
    cls = node.get("class")
    if not isinstance(cls, str) or not cls:
      raise fail(f"expected a class name, found {describe(cls)}",
                 path=join(path, "class"), node=node,
                 key="class" if "class" in node else None,
                 hint="e.g. class: SRAM, class: DRAM, class: intmac")
    if "spatial" in node:
      mx, my = self._spatial(node, state, path)
      state.instances *= mx * my
      state.mesh_x *= mx
      state.mesh_y *= my
    attrs, raw_attrs, failures = leaf_attrs(node, state, self.variables,
                                             path)
    attrs["meshX"], attrs["meshY"] = state.mesh_x, state.mesh_y
    leaf = Leaf(name=name, cls=cls, instances=state.instances,
                 mesh_x=state.mesh_x, mesh_y=state.mesh_y, attrs=attrs,
                 raw_attrs=raw_attrs,
                 ert_name=f"{name}[1..{state.instances}]", node=node,
                 path=path,
                 required_actions=tuple(node.get("required_actions") or ()),
                 is_dummy=cls == DUMMY_CLASS, failures=failures,
                 subclass=subclass_of(node, path))
    self.leaves.append(leaf)
    self._constraints(node, name, path)
    return self._kept(name)

  def _constraints(self, node: dict, target: str, path: str) -> None:
    cons = node.get("constraints")
    if not cons:
      return
    cpath = join(path, "constraints")
    cons = require_mapping(cons, path=cpath, parent=node, key="constraints",
                           what="a mapping {dataspace, temporal, spatial}")
    check_keys(cons, CONSTRAINT_SECTIONS, path=cpath, what="constraints")
    for section in CONSTRAINT_SECTIONS:
      if section not in cons or cons[section] is None:
        continue
      body = require_mapping(cons[section], path=join(cpath, section),
                             parent=cons, key=section)
      if "target" in body or "type" in body:
        raise fail("'target'/'type' are implied by where the constraint is "
                   "written", path=join(cpath, section), node=body)
      item = yamlio.YDict(body)
      item.where = getattr(body, "where", "")
      item.key_where = dict(getattr(body, "key_where", {}))
      item["target"] = target
      item["type"] = "bypass" if section == "dataspace" else section
      raw = RawConstraint(item, join(cpath, section))
      self.constraints.append(raw)
      if section == "dataspace":
        self._dataspace_items[target] = raw

  def _kept(self, level: str) -> set:
    raw = self._dataspace_items.get(level)
    keep = raw.item.get("keep") if raw else None
    if isinstance(keep, str):
      keep = [keep]
    return set(keep) if isinstance(keep, list) else set()

  def _propagate_parallel_bypass(self, branches: list) -> None:
    """In a !Parallel, what one branch keeps, the other branches bypass."""
    for b, (start, stop, keeps) in enumerate(branches):
      others = set()
      for o, (_, _, k) in enumerate(branches):
        if o != b:
          others |= k
      for leaf in self.leaves[start:stop]:
        if leaf.is_dummy:
          continue
        extra = sorted(others - self._kept(leaf.name))
        if not extra:
          continue
        raw = self._dataspace_items.get(leaf.name)
        if raw is None:
          item = yamlio.YDict(target=leaf.name, type="bypass")
          item.where = yamlio.where(leaf.node)
          raw = RawConstraint(item, join(leaf.path, "constraints.dataspace"))
          self.constraints.append(raw)
          self._dataspace_items[leaf.name] = raw
        bypass = raw.item.get("bypass") or []
        if isinstance(bypass, str):
          bypass = [bypass]
        merged = yamlio.YList(list(bypass) +
                              [d for d in extra if d not in bypass])
        merged.where = getattr(bypass, "where", "") or raw.item.where
        raw.item["bypass"] = merged
