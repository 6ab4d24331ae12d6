"""Reads ``architecture:`` into an :class:`Architecture`.

Two forms are accepted:

* the subtree form Timeloop's C++ reads (``parsed-processed-input.yaml``,
  v0.3 specs): ``{subtree: [{name, attributes, local: [...], subtree}]}``
  where a ``Name[1..N]`` range gives N instances per parent instance;
* the v0.4 user form: ``{nodes: [!Container, !Component, !Parallel, ...]}``.
  A container with ``spatial: {meshX, meshY}`` becomes the storage-less level
  ``inter_<name>_spatial`` (class ``dummy_storage``) holding the parent's
  instances; everything below it is replicated meshX*meshY times.
  Container attributes are inherited downward.  Per-node ``constraints`` are
  returned as raw directives (validated later against the problem).

Both give the flattened order outermost first; :class:`Architecture` stores
it innermost first, as Timeloop numbers levels.

Known difference from the reference outputs: tutorial 04's
``parsed-processed-input.yaml`` (written by an older front end) places
``inter_PE_spatial`` above ``GlobalBuffer`` and gives ``GlobalBuffer`` 16
instances, although in its v0.4 ``arch.yaml`` the ``PE`` container comes
after ``GlobalBuffer``.  The rule here follows the v0.4 text (GlobalBuffer
has 1 instance); the flattened file still loads as written.  Likewise the
tutorial 00-02 flattened files call their top level ``PE_top_level`` where
this reader derives ``<first container>_top_level``; ERT lookups fall back to
the bare component name, so both resolve.
"""
from __future__ import annotations

import dataclasses
from typing import Mapping, Optional

from jaxloop.spec import yamlio
from jaxloop.spec.arch_nodes import NodeWalker
from jaxloop.spec.arch_subtree import walk_subtree_body
from jaxloop.spec.archtree import (Leaf, RawConstraint, State, inherit,
                                   opt_int, opt_num, resolved_attrs)
from jaxloop.spec.diagnostics import (check_keys, describe, fail, join,
                                      require_list, require_mapping)
from jaxloop.spec.types import Architecture, ArithmeticLevel, StorageLevel

COMPUTE_CLASSES = ("intmac", "fpmac", "mac", "compute", "intmultiplier",
                   "fpmultiplier", "multiplier", "adder", "aladdin_multiplier",
                   "aladdin_adder", "intadder", "fpadder", "mac_unit")
STORAGE_CLASSES = ("DRAM", "SRAM", "regfile", "smartbuffer_RF",
                   "smartbuffer_SRAM", "storage", "dummy_storage",
                   "smartbuffer_metadata", "regfile_metadata")
ARCH_KEYS = ("version", "subtree", "local", "nodes", "attributes",
             "description")


@dataclasses.dataclass
class ArchResult:
  """What :func:`parse_architecture` returns.

  Attributes:
    arch: the architecture.
    constraints: node constraints (v0.4 form), outermost level first.
    aliases: container name -> ``inter_<name>_spatial`` level name.
    form: ``"v0.4"`` or ``"subtree"``.
  """
  arch: Architecture
  constraints: list
  aliases: dict
  form: str


def parse_architecture(node: object, path: str = "architecture",
                       variables: Optional[Mapping[str, object]] = None
                       ) -> ArchResult:
  """Builds the Architecture from an ``architecture:`` mapping.

  Args:
    node: the value of ``architecture``.
    path: key path for messages.
    variables: resolved top-level ``variables`` (v0.4 expressions).

  Returns:
    The architecture, node constraints and container aliases.

  Raises:
    SpecError: malformed input.
    UnsupportedFeatureError: constructs jaxloop cannot evaluate.
  """
  node = require_mapping(node, path=path, what="a mapping with 'nodes' "
                         "(v0.4) or 'subtree' (flattened)")
  check_keys(node, ARCH_KEYS, path=path, what="the architecture")
  variables = dict(variables or {})
  _check_one_form(node, path)
  constraints: list[RawConstraint] = []
  aliases: dict[str, str] = {}
  if "nodes" in node:
    form = "v0.4"
    leaves, top_attrs = _walk_nodes(node, variables, path, constraints,
                                    aliases)
  elif "subtree" in node or "local" in node:
    form = "subtree"
    leaves, top_attrs = _walk_subtree(node, variables, path)
  else:
    raise fail("expected 'nodes' (v0.4) or 'subtree' (flattened form), found "
               "neither", path=path, node=node,
               hint="A v0.4 architecture looks like: architecture: "
               "{version: 0.4, nodes: [!Container ..., !Component ...]}")
  if not leaves:
    raise fail("expected storage levels and a compute unit, found no "
               "components", path=path, node=node,
               hint="List at least a DRAM and the MAC under 'nodes:'.")
  return ArchResult(_build(leaves, top_attrs, variables, path, node),
                    constraints, aliases, form)


def _check_one_form(node: dict, path: str) -> None:
  """An architecture is either v0.4 ``nodes`` or a v0.3/flattened
  ``subtree``/``local`` hierarchy, not both."""
  if "nodes" in node and ("subtree" in node or "local" in node):
    other = "subtree" if "subtree" in node else "local"
    raise fail(f"expected either 'nodes' (v0.4) or '{other}' (v0.3 / "
               f"flattened form), found both", path=join(path, other),
               node=node, key=other,
               hint="Keep one form: a v0.4 file lists !Container/!Component "
               "entries under 'nodes'.")


def _walk_nodes(node: dict, variables: dict, path: str,
                constraints: list, aliases: dict) -> tuple[list, dict]:
  """Flattens the v0.4 ``nodes`` list into leaves (outermost first) and the
  top container's attributes; collects node constraints and container
  aliases.  ERT names are prefixed with the top container's name, as
  Accelergy names its components."""
  leaves: list[Leaf] = []
  nodes = require_list(node["nodes"], path=join(path, "nodes"),
                       parent=node, key="nodes")
  walker = NodeWalker(variables, leaves, constraints, aliases)
  walker.walk(nodes, State(), join(path, "nodes"), parallel=False)
  top_name = walker.top_name or "system_top_level"
  for leaf in leaves:
    leaf.ert_name = f"{top_name}.{leaf.ert_name}"
  return leaves, walker.top_attrs


def _walk_subtree(node: dict, variables: dict,
                  path: str) -> tuple[list, dict]:
  """Flattens the ``subtree``/``local`` form into leaves (outermost first);
  the top attributes are the root's merged with its first subtree's."""
  leaves: list[Leaf] = []
  state = State()
  if "attributes" in node:
    inherit(state, node["attributes"], variables, join(path, "attributes"),
            node)
  walk_subtree_body(node, state, leaves, variables, path)
  subs = node.get("subtree") or []
  top_attrs = dict(state.attrs)
  if isinstance(subs, list) and subs and isinstance(subs[0], dict):
    top_attrs.update(resolved_attrs(subs[0].get("attributes") or {},
                                    variables, join(path, "subtree[0]"),
                                    subs[0])[0])
  return leaves, top_attrs


def _is_compute(leaf: Leaf) -> bool:
  return leaf.cls in COMPUTE_CLASSES or tuple(leaf.required_actions) == (
      "compute",)


def _storage(leaf: Leaf) -> StorageLevel:
  """A buffer level (Timeloop: BufferLevel) from a storage leaf.

  Attributes are read (and their errors raised) in the order word bits,
  geometry, bandwidths, banks, buffering, reduction support.
  """
  a, p, n, f = leaf.attrs, leaf.path, leaf.node, leaf.failures
  word_bits = _word_bits(leaf)
  cluster, width, block, depth = _geometry(leaf, word_bits)
  bw = _bandwidths(leaf)
  n_banks = opt_int(a, ("n_banks", "num_banks", "n-banks"), p, n, f)
  mb, mu = _buffering(leaf)
  red = _reduction_supported(leaf)
  return StorageLevel(
      name=leaf.name, cls=leaf.cls, instances=leaf.instances,
      mesh_x=leaf.mesh_x, mesh_y=leaf.mesh_y, depth=depth, width=width,
      word_bits=word_bits, block_size=block, cluster_size=cluster,
      n_banks=2 if n_banks is None else n_banks,
      read_bandwidth=_float_or_none(bw["read_bandwidth"]),
      write_bandwidth=_float_or_none(bw["write_bandwidth"]),
      shared_bandwidth=_float_or_none(bw["shared_bandwidth"]),
      multiple_buffering=1.0 if mb is None else float(mb),
      min_utilization=0.0 if mu is None else float(mu),
      reduction_supported=red, is_dummy=leaf.is_dummy,
      ert_name=leaf.ert_name, attributes=yamlio.plain(leaf.raw_attrs),
      subclass=leaf.subclass)


def _attributes_node(leaf: Leaf) -> dict:
  """The YAML node holding the leaf's attributes (for message locations)."""
  return leaf.node.get("attributes") or leaf.node


def _word_bits(leaf: Leaf) -> int:
  """Bits per word (``datawidth``); Timeloop's default word is 16 bits."""
  word_bits = opt_int(leaf.attrs, ("datawidth", "word_bits", "word-bits"),
                      leaf.path, leaf.node, leaf.failures)
  word_bits = 16 if word_bits is None else word_bits
  if word_bits < 1:
    raise fail("attribute 'datawidth': expected a positive integer, found 0",
               path=join(leaf.path, "attributes.datawidth"), node=leaf.node)
  return word_bits


def _geometry(leaf: Leaf, word_bits: int):
  """``(cluster_size, width, block_size, depth)`` of a buffer.

  A row of ``width`` bits holds ``block_size`` words, by default
  ``width // (word_bits * cluster_size)``; the buffer has ``depth`` rows,
  or enough rows for ``entries`` words.  ``width`` and ``depth`` are None
  when not given (unbounded).
  """
  a, p, n, f = leaf.attrs, leaf.path, leaf.node, leaf.failures
  cluster = opt_int(a, ("cluster_size", "cluster-size"), p, n, f) or 1
  width = opt_int(a, ("width", "memory_width"), p, n, f)
  block = opt_int(a, ("block_size", "block-size"), p, n, f)
  if block is None:
    block = max(1, width // (word_bits * cluster)) if width else 1
  depth = opt_int(a, ("depth", "memory_depth"), p, n, f)
  if depth is None:
    entries = opt_int(a, ("entries",), p, n, f)
    if entries is not None:
      depth = -(-entries // block)
  if depth == 0 and not leaf.is_dummy:
    raise fail(f"attribute 'depth': expected a positive integer, found 0 "
               f"(buffer '{leaf.name}' could hold nothing)",
               path=join(p, "attributes.depth"), node=_attributes_node(leaf),
               key="depth" if "depth" in (n.get("attributes") or {}) else None,
               hint="Give the number of rows, or remove the level (or bypass "
               "every data space there).")
  return cluster, width, block, depth


def _bandwidths(leaf: Leaf) -> dict:
  """``{read,write,shared}_bandwidth`` in words per cycle (None when
  unlimited)."""
  bw = {k: opt_num(leaf.attrs, (k, k.replace("_", "-")), leaf.path,
                   leaf.node, leaf.failures)
        for k in ("read_bandwidth", "write_bandwidth", "shared_bandwidth")}
  for k, v in bw.items():
    if v is not None and v < 0:
      raise fail(f"attribute '{k}': expected a non-negative number (words "
                 f"per cycle), found {v!r}",
                 path=join(leaf.path, f"attributes.{k}"),
                 node=_attributes_node(leaf), key=k,
                 hint="Leave the attribute out for unlimited bandwidth.")
  return bw


def _buffering(leaf: Leaf):
  """``(multiple_buffering, min_utilization)`` as given (None if absent):
  a positive buffering factor and a utilization fraction in [0, 1]."""
  a, p, n, f = leaf.attrs, leaf.path, leaf.node, leaf.failures
  mb = opt_num(a, ("multiple_buffering", "multiple-buffering"), p, n, f)
  mu = opt_num(a, ("min_utilization", "min-utilization"), p, n, f)
  if mb is not None and not mb > 0:
    raise fail(f"attribute 'multiple_buffering': expected a positive number, "
               f"found {mb!r}", path=join(p, "attributes.multiple_buffering"),
               node=_attributes_node(leaf), key="multiple_buffering",
               hint="1 means single buffering, 2 double buffering.")
  if mu is not None and not 0 <= mu <= 1:
    raise fail(f"attribute 'min_utilization': expected a fraction between 0 "
               f"and 1, found {mu!r}",
               path=join(p, "attributes.min_utilization"),
               node=_attributes_node(leaf), key="min_utilization")
  return mb, mu


def _reduction_supported(leaf: Leaf) -> bool:
  """Whether the buffer can accumulate partial sums (default true)."""
  red = leaf.attrs.get("reduction_supported", True)
  if not isinstance(red, bool):
    raise fail(f"attribute 'reduction_supported': expected true or false, "
               f"found {describe(red)}",
               path=join(leaf.path, "attributes.reduction_supported"),
               node=_attributes_node(leaf), key="reduction_supported")
  return red


def _float_or_none(v) -> Optional[float]:
  return None if v is None else float(v)


def _arithmetic(leaf: Leaf) -> ArithmeticLevel:
  f = leaf.failures
  word_bits = opt_int(leaf.attrs, ("datawidth", "word_bits", "word-bits"),
                       leaf.path, leaf.node, f)
  return ArithmeticLevel(
      name=leaf.name, cls=leaf.cls, instances=leaf.instances,
      mesh_x=leaf.mesh_x, mesh_y=leaf.mesh_y,
      word_bits=16 if word_bits is None else word_bits,
      ert_name=leaf.ert_name, attributes=yamlio.plain(leaf.raw_attrs),
      subclass=leaf.subclass)


def _build(leaves: list, top_attrs: dict, variables: Mapping[str, object],
           path: str, node: dict) -> Architecture:
  compute = leaves[-1]
  if len(leaves) < 2:
    raise fail(f"expected at least one storage level above the compute unit "
               f"'{compute.name}', found none", path=compute.path,
               node=compute.node,
               hint="Add the main memory, e.g. !Component {name: DRAM, "
               "class: DRAM, attributes: {width: 64, datawidth: 8}}.")
  for leaf in leaves:
    if leaf.instances > 2**31 - 1:
      raise fail(f"expected at most {2**31 - 1} instances, found "
                 f"{leaf.instances} for '{leaf.name}'", path=leaf.path,
                 node=leaf.node)
  if compute.is_dummy or compute.cls in STORAGE_CLASSES or "depth" in \
      compute.attrs:
    what = "a spatial container" if compute.is_dummy else \
        f"'{compute.name}' (class {compute.cls}), which looks like storage"
    raise fail(f"the innermost node is {what}; the last component must be "
               "the compute unit", path=compute.path, node=compute.node,
               hint="End the architecture with the MAC, e.g. "
               "!Component {name: mac, class: intmac}.")
  for leaf in leaves[:-1]:
    if _is_compute(leaf):
      raise fail(f"'{leaf.name}' (class {leaf.cls}) looks like a compute "
                 f"unit but is not the innermost component (that is "
                 f"'{compute.name}')", path=leaf.path, node=leaf.node,
                 hint="jaxloop supports one arithmetic level, listed last.")
  seen: dict[str, str] = {}
  for leaf in leaves:
    if leaf.name in seen:
      raise fail(f"two levels are named '{leaf.name}' (the other is "
                 f"{seen[leaf.name]})", path=leaf.path, node=leaf.node,
                 hint="Level names must be unique.")
    other = yamlio.where(leaf.node)
    seen[leaf.name] = f"{leaf.path}" + (f" at {other}" if other else "")
  storage = tuple(_storage(l) for l in reversed(leaves[:-1]))
  arith = _arithmetic(compute)
  gcs = top_attrs.get("global_cycle_seconds",
                      variables.get("global_cycle_seconds", 1e-9))
  if isinstance(gcs, bool) or not isinstance(gcs, (int, float)) or gcs <= 0:
    raise fail(f"global_cycle_seconds: expected a positive number, found "
               f"{describe(gcs)}", path=join(path, "global_cycle_seconds"),
               node=node)
  tech = top_attrs.get("technology", variables.get("technology", ""))
  return Architecture(storage=storage, arithmetic=arith,
                      global_cycle_seconds=float(gcs),
                      technology="" if tech is None else str(tech),
                      source=yamlio.where(node))
