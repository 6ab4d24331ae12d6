"""Puts the readers together: files in, one validated :class:`Spec` out."""
from __future__ import annotations

import os
import re
import warnings
from typing import Callable, Mapping, Optional, Sequence, Union

from jaxloop.errors import SpecError
from jaxloop.spec import expr
from jaxloop.spec import yamlio
from jaxloop.spec.arch import ArchResult, parse_architecture
from jaxloop.spec.diagnostics import describe, fail, join, suggest
from jaxloop.spec.mapper import parse_mapper
from jaxloop.spec.mapping import (Context, dummy_defaults, parse_directive,
                                  parse_directives)
from jaxloop.spec.problem import parse_problem
from jaxloop.spec.tables import parse_art, parse_ert
from jaxloop.spec.types import (AreaTable, Directive, EnergyTable, Problem,
                                Spec)

PathLike = Union[str, "os.PathLike[str]"]

# Top-level keys jaxloop reads.
READ_KEYS = ("architecture", "problem", "mapping", "mapper", "variables",
             "architecture_constraints", "mapspace_constraints",
             "constraints", "extra_mapping_constraints", "mapspace", "ERT",
             "ART")
# Top-level keys Timeloop files carry that jaxloop does not need.
IGNORED_KEYS = ("compound_components", "components", "globals",
                "dumped_by_timeloop_front_end", "model", "version",
                "sparse_optimizations")
CONSTRAINT_KEYS = ("architecture_constraints", "mapspace_constraints",
                   "constraints", "extra_mapping_constraints")


def load_spec(*paths: PathLike, ert: object = None, art: object = None,
              variables: Optional[Mapping[str, object]] = None,
              edit: Optional[Callable[[dict], None]] = None) -> Spec:
  """Loads Timeloop input files into one Spec.

  Files are merged by top-level key (a later file's key replaces an earlier
  one; ``mapping`` lists and constraint ``targets`` are concatenated).
  Templates among them (``*.jinja2``, or files holding ``{{``/``{%``) are
  rendered first, as Timeloop's front end renders them.

  Args:
    *paths: YAML files: architecture (v0.4 ``nodes`` or flattened
      ``subtree`` form), problem, mapping, constraints, mapper, and
      optionally ERT/ART (top-level ``ERT:``/``ART:``).
    ert: energy table: a file path, a loaded mapping, or an EnergyTable.
      Overrides an ``ERT`` found in ``paths``.
    art: area table, same forms as ``ert``.
    variables: values for the templates' variables (Timeloop's
      ``jinja_parse_data``).
    edit: called on the merged document (templates rendered) before it is
      parsed, to change it in place (``jaxloop.sweep`` sets component
      attributes this way).

  Returns:
    The spec.

  Raises:
    SpecError: missing files or malformed input (one error, located).
    UnsupportedFeatureError: Timeloop features jaxloop does not model.
  """
  doc, names = _merged_document(paths, variables)
  if edit is not None:
    edit(doc)
  return spec_from_document(doc, names, ert=ert, art=art)


def render_documents(paths: Sequence[PathLike],
                     variables: Optional[Mapping[str, object]] = None,
                     needs: tuple = ("architecture", "problem")
                     ) -> tuple[dict, tuple[str, ...]]:
  """``(document, files read)``: the files (templates rendered with
  ``variables``) merged by top-level key, as :func:`load_spec` reads them
  before parsing; ``needs``: the sections that must be there.  Several
  problems on one architecture render it once and parse each with
  :func:`spec_from_document`.

  Raises:
    SpecError: missing files, malformed YAML or templates, a missing or
      misspelt section.
  """
  return _merged_document(tuple(paths), variables, needs=tuple(needs))


def spec_from_document(doc: dict, names: Sequence[str], *,
                       ert: object = None, art: object = None) -> Spec:
  """The Spec of a merged, rendered document (see :func:`load_spec`;
  ``names``: the files it was read from, for messages).

  Raises:
    SpecError: malformed input (one error, located).
    UnsupportedFeatureError: Timeloop features jaxloop does not model.
  """
  names = tuple(names)
  variables = _variables(doc)
  problem = parse_problem(doc["problem"], "problem", variables)
  res = parse_architecture(doc["architecture"], "architecture", variables)
  ctx = Context.of(problem, res.arch, res.aliases)
  constraints = _constraints(doc, res, problem, ctx)
  mapping = _mapping(doc, res, problem, ctx)
  ert_table = _table(ert, "ERT", parse_ert, EnergyTable, doc)
  art_table = _table(art, "ART", parse_art, AreaTable, doc)
  mapper = parse_mapper(doc["mapper"]) if doc.get("mapper") else None
  return Spec(problem=problem, arch=res.arch, mapping=mapping,
              constraints=constraints, ert=ert_table, art=art_table,
              mapper=mapper, sources=names)


def load_architecture(*paths: PathLike,
                      variables: Optional[Mapping[str, object]] = None
                      ) -> Spec:
  """Loads an architecture (and whatever else the files hold) without a
  problem: what Accelergy's tables need.  The Spec's ``problem`` is None
  and it has no mapping or constraints.

  Raises:
    SpecError: malformed input, or no ``architecture:`` section.
  """
  doc, names = _merged_document(paths, variables, needs=("architecture",))
  res = parse_architecture(doc["architecture"], "architecture",
                           _variables(doc))
  return Spec(problem=None, arch=res.arch, sources=names)


def _merged_document(paths: tuple, variables: Optional[Mapping],
                     needs: tuple = ("architecture", "problem")
                     ) -> tuple[dict, tuple[str, ...]]:
  """The input files (templates rendered with ``variables``) merged by
  top-level key, with known keys only (near misses of a section are
  errors, other unknown keys warnings) and the sections ``needs`` names;
  and the files read: the inputs, then the files they include."""
  names = tuple(os.fspath(p) for p in paths)
  if not names:
    raise SpecError("no input files given", hint="Pass at least an "
                    "architecture and a problem file.")
  session = yamlio.new_session(variables)
  docs = [yamlio.load_yaml_file(p, session=session) for p in names]
  doc = yamlio.merge_documents(docs)
  _check_top_keys(doc, names)
  for key in needs:
    if key not in doc:
      raise SpecError(
          f"no '{key}:' section in {', '.join(names)}", path=key,
          where=names[0],
          hint=f"Add the file that defines '{key}:' to the inputs.")
  read = list(names)
  for f in session.files:
    if not any(_same_file(f, r) for r in read):
      read.append(f)
  return doc, tuple(read)


_V03 = re.compile(r"^\s*version:\s*['\"]?0\.3\b", re.M)


def explain_v03(error: SpecError, sources: tuple) -> SpecError:
  """``error`` (a component attribute the energy estimate needs) with the
  conversion it asks for when the architecture is v0.3 (``version: 0.3``,
  found in the files as Timeloop's front end finds versions): v0.4
  component classes name attributes differently, and beyond the v0.3
  names read as v0.4 ones (``memory_depth`` ...) that is a conversion by
  hand.  Other errors are returned as they are."""
  parts = error.path.split(".")
  if len(parts) < 4 or parts[0] != "architecture" or \
      "needs attribute" not in error.message:
    return error
  v03 = [f for f in sources if _version_03(f)]
  if not v03:
    return error
  comp, attr = parts[1], parts[-1]
  return SpecError(
      f"{error.message}: the architecture is v0.3, the component classes "
      "v0.4", path=error.path, where=v03[0],
      hint=f"{error.hint} jaxloop reads the v0.3 memory_depth, memory_width "
      "and word_bits as the v0.4 depth, width and datawidth; other "
      f"attributes need converting by hand: add '{attr}' to the attributes "
      f"of '{comp}', or use a v0.4 architecture (tutorial 07: "
      "arch/arch.yaml), or pass Accelergy's ERT.yaml and ART.yaml.")


def _version_03(path: str) -> bool:
  try:
    with open(path, encoding="utf-8") as f:
      return bool(_V03.search(f.read()))
  except (OSError, UnicodeDecodeError):
    return False


def _same_file(a: str, b: str) -> bool:
  try:
    return os.path.samefile(a, b)
  except OSError:
    return a == b


def _constraints(doc: dict, res: ArchResult, problem: Problem,
                 ctx: Context) -> tuple[Directive, ...]:
  """Mapspace constraints: the architecture nodes' own, then each
  constraint section's (and ``mapspace.constraints``), then the defaults
  Timeloop adds for storage-less spatial levels."""
  constraints = [parse_directive(c.item, ctx, path=c.path, constraint=True)
                 for c in res.constraints]
  for key in CONSTRAINT_KEYS:
    if key in doc:
      constraints.extend(_constraint_section(doc, key, ctx))
  if isinstance(doc.get("mapspace"), dict) and \
      "constraints" in doc["mapspace"]:
    constraints.extend(_constraint_section(doc["mapspace"], "constraints",
                                           ctx, "mapspace"))
  constraints.extend(dummy_defaults(constraints, res.arch, problem,
                                    yamlio.where(doc["architecture"])))
  return tuple(constraints)


def _mapping(doc: dict, res: ArchResult, problem: Problem,
             ctx: Context) -> tuple[Directive, ...]:
  """The ``mapping:`` directives (a list, or ``{mapping: [...]}``) plus the
  defaults for storage-less spatial levels; empty without a mapping."""
  if doc.get("mapping") is None:
    return ()
  raw = doc["mapping"]
  if isinstance(raw, dict) and "mapping" in raw:
    raw = raw["mapping"]
  mapping = parse_directives(raw, ctx, path="mapping", constraint=False,
                             parent=doc, key="mapping")
  if mapping:
    mapping = mapping + dummy_defaults(mapping, res.arch, problem,
                                       mapping[0].where)
  return tuple(mapping)


def _check_top_keys(doc: dict, names: tuple) -> None:
  if not any(k in doc for k in ("architecture", "problem")):
    found = ", ".join(str(k) for k in doc) or "nothing"
    raise SpecError(
        f"expected top-level 'architecture:' and 'problem:' sections, found "
        f"{found}", where=", ".join(names),
        hint="Pass the architecture and problem files (for example a "
        "Timeloop parsed-processed-input.yaml, or arch.yaml + problem.yaml "
        "+ map.yaml).")
  for key in doc:
    if key in READ_KEYS or key in IGNORED_KEYS or str(key).endswith(
        "_ignore"):
      continue
    hint = suggest(key, READ_KEYS)
    if hint:
      # A near miss of a section jaxloop reads is a typo, not an extra:
      # ignoring it would silently drop the section.
      raise SpecError(
          f"unknown top-level key '{key}'; expected one of "
          f"{', '.join(READ_KEYS)}", path=str(key),
          where=yamlio.where(doc, key), hint=hint)
    warnings.warn(f"{yamlio.where(doc, key)}: ignoring unknown top-level key "
                  f"'{key}'" + (f" ({hint})" if hint else ""), stacklevel=4)


def _variables(doc: dict) -> dict:
  raw = doc.get("variables") or {}
  if not isinstance(raw, dict):
    raise fail(f"expected a mapping of variables, found {describe(raw)}",
               path="variables", node=doc, key="variables")
  raw = {k: v for k, v in raw.items() if k != "version"}
  values, _ = expr.resolve_all(raw, {})
  return values


def _constraint_section(parent: dict, key: str, ctx: Context,
                        prefix: str = "") -> tuple:
  node = parent[key]
  path = join(prefix, key) if prefix else key
  if node is None:
    return ()
  if isinstance(node, dict):
    if "targets" not in node:
      raise fail("missing 'targets'", path=join(path, "targets"), node=node,
                 hint=f"Write {key}: {{targets: [{{target: ..., type: ...}}, "
                 "...]}}")
    return parse_directives(node["targets"], ctx, path=join(path, "targets"),
                            constraint=True, parent=node, key="targets")
  return parse_directives(node, ctx, path=path, constraint=True,
                          parent=parent, key=key)


def _table(value: object, key: str, parse, cls, doc: dict) -> Optional[object]:
  """An ERT/ART from the argument (path, mapping, table) or the documents."""
  if value is None:
    return parse(doc, key) if key in doc else None
  if isinstance(value, cls):
    return value
  if isinstance(value, (str, os.PathLike)):
    loaded = yamlio.load_yaml_file(value)
    return parse(loaded, key)
  if isinstance(value, dict):
    return parse(value, key)
  raise SpecError(f"{key}: expected a file path, a mapping or a "
                  f"{cls.__name__}, found {type(value).__name__}", path=key)
