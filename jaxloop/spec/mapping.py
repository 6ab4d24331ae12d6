"""Reads mapping directives and mapspace/architecture constraints.

Both are lists of ``{target, type, factors, permutation, ...}`` entries and
become :class:`Directive` objects.  ``factors`` may be written as
``"R=3 P=16"``, ``"R=3,P=16"``, ``"R3 P16"`` (Timeloop's map.yaml), a list
``[R=3, P=16]`` or a mapping ``{R: 3}``; constraints may also use ``M<=4`` /
``M>=2`` bounds.  ``permutation`` is a string of one-letter dims
(``"PRKC"``) or a list of names, innermost first.
"""
from __future__ import annotations

import dataclasses
import re
import types
import warnings
from typing import Mapping, Sequence

from jaxloop.errors import SpecError
from jaxloop.spec import yamlio
from jaxloop.spec.diagnostics import (check_keys, describe, fail, join,
                                      require_list, require_mapping, suggest)
from jaxloop.spec.types import Architecture, Directive, Problem

TYPES = ("temporal", "spatial", "bypass", "datatype", "dataspace",
         "utilization", "parallelism")
MAPPING_KEYS = ("target", "type", "factors", "permutation", "split", "keep",
                "bypass")
CONSTRAINT_KEYS = MAPPING_KEYS + ("no_multicast", "no_multicast_no_reduction",
                                  "min")
# Timeloop constraint hints that only steer the mapper's search; accepted and
# ignored (with a warning) since they do not change what a mapping means.
IGNORED_CONSTRAINT_KEYS = ("maximize_dims", "factors_only", "no_reuse",
                           "no_link_transfer", "no_temporal_reuse",
                           "no_coalesce", "max", "default_max_factor",
                           "default_min_factor", "tensors")

_BOUND_TOKEN = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)(<=|>=|=)(-?\d+)$")
_GLUED_TOKEN = re.compile(r"^([A-Za-z_](?:[A-Za-z0-9_]*[A-Za-z_])?)(\d+)$")
# ``M=2.5`` / ``M2.5``: read only to report a non-integer factor clearly.
_NUMBER_TOKEN = re.compile(
    r"^([A-Za-z_](?:[A-Za-z0-9_]*[A-Za-z_])?)(<=|>=|=)?"
    r"([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)$")


@dataclasses.dataclass(frozen=True)
class Context:
  """What directives are validated against.

  Attributes:
    dims: problem dimension names.
    dataspaces: data space names.
    targets: storage level names (innermost first, like Architecture).
    aliases: other names accepted for a target (``PE`` ->
      ``inter_PE_spatial``).
  """
  dims: tuple[str, ...]
  dataspaces: tuple[str, ...]
  targets: tuple[str, ...]
  aliases: tuple[tuple[str, str], ...] = ()
  instance: tuple[tuple[str, object], ...] = ()

  @classmethod
  def of(cls, problem: Problem, arch: Architecture,
         aliases: Mapping[str, str] = ()) -> "Context":
    # The problem instance as Timeloop's front end holds it for expressions
    # (``spec.problem.instance``): bounds, coefficients and a densities entry.
    instance = (tuple(zip(problem.dims, problem.bounds))
                + tuple(problem.coefficients) + (("densities", {}),))
    return cls(dims=problem.dims,
               dataspaces=tuple(d.name for d in problem.dataspaces),
               targets=tuple(s.name for s in arch.storage),
               aliases=tuple(dict(aliases).items()), instance=instance)


def parse_directives(items: object, ctx: Context, *, path: str,
                     constraint: bool, parent: object = None,
                     key: object = None) -> tuple[Directive, ...]:
  """Parses a list of mapping (or constraint) entries.

  Args:
    items: the YAML list (``None`` means empty).
    ctx: names to validate against.
    path: key path of the list, e.g. ``mapping``.
    constraint: True for constraints (allows bounds, 0 factors,
      ``no_multicast``, ``min``, and ignores search hints).
    parent, key: where the list sits, for messages.

  Returns:
    The directives in input order.
  """
  if items is None:
    return ()
  items = require_list(items, path=path, parent=parent, key=key,
                       what="a list of directives {target, type, ...}")
  out = tuple(parse_directive(item, ctx, path=join(path, i),
                              constraint=constraint, parent=items, index=i)
              for i, item in enumerate(items))
  if not constraint:
    _check_unique(out, path)
  return out


def _check_unique(directives: Sequence[Directive], path: str) -> None:
  """A mapping gives each level at most one directive of each type."""
  first: dict = {}
  for i, d in enumerate(directives):
    if d.type not in ("temporal", "spatial", "bypass"):
      continue
    k = (d.target, d.type)
    if k in first:
      j, other = first[k]
      raise SpecError(
          f"expected one {d.type} directive per level, found a second one "
          f"for '{d.target}' (the first is {path}[{j}]"
          + (f" at {other.where}" if other.where else "") + ")",
          path=join(path, i), where=d.where,
          hint="Merge the two directives (their factors, permutation or "
          "keep/bypass lists) into one.")
    first[k] = (i, d)


def parse_directive(item: object, ctx: Context, *, path: str,
                    constraint: bool, parent: object = None,
                    index: object = None) -> Directive:
  """Parses one ``{target, type, ...}`` entry (see :func:`parse_directives`).
  """
  item = require_mapping(item, path=path, parent=parent, key=index,
                         what="a directive {target, type, ...}")
  _check_directive_keys(item, path, constraint)
  at = yamlio.where(parent, index) or yamlio.where(item)
  target = _parse_target(item, ctx, path)
  dtype = _directive_type(item, path)
  fields = _directive_fields(item, ctx, path, constraint)
  _check_type_fields(dtype, fields, item, path)
  return Directive(target=target, type=dtype, where=at, **fields)


def _check_directive_keys(item: dict, path: str, constraint: bool) -> None:
  """Rejects unknown keys; a constraint's mapper search hints (which do not
  change what a mapping means) are ignored with a warning."""
  if not constraint:
    check_keys(item, MAPPING_KEYS, path=path, what="a mapping directive")
    return
  ignored = [k for k in item if k in IGNORED_CONSTRAINT_KEYS]
  if ignored:
    warnings.warn(f"{yamlio.where(item)}: {path}: ignoring mapper search "
                  f"hint(s) {', '.join(ignored)}", stacklevel=4)
  checked = yamlio.YDict({k: v for k, v in item.items()
                          if k not in IGNORED_CONSTRAINT_KEYS})
  checked.where = yamlio.where(item)
  checked.key_where = dict(getattr(item, "key_where", {}))
  check_keys(checked, CONSTRAINT_KEYS, path=path, what="a constraint")


def _directive_type(item: dict, path: str) -> str:
  """The directive's type; ``keep``/``bypass`` lists without a type, and
  Timeloop's ``datatype``/``dataspace`` spellings, mean ``bypass``."""
  dtype = item.get("type")
  if dtype is None and ("keep" in item or "bypass" in item):
    dtype = "bypass"
  if dtype not in TYPES:
    found = "nothing" if dtype is None else describe(dtype)
    raise fail(f"expected type to be one of {', '.join(TYPES)}; found {found}",
               path=join(path, "type"), node=item,
               key="type" if "type" in item else None,
               hint=suggest(dtype, TYPES) if dtype is not None else
               "Add e.g. 'type: temporal'.")
  return "bypass" if dtype in ("datatype", "dataspace") else dtype


def _directive_fields(item: dict, ctx: Context, path: str,
                      constraint: bool) -> dict:
  """The optional ``Directive`` fields the entry gives, in the order
  factors, factor_bounds, permutation, split, keep, bypass, no_multicast,
  min."""
  fields: dict = {}
  if "factors" in item:
    fields["factors"], fields["factor_bounds"] = parse_factors(
        item["factors"], ctx.dims, path=join(path, "factors"), node=item,
        key="factors", constraint=constraint)
  if "permutation" in item:
    fields["permutation"] = parse_permutation(
        item["permutation"], ctx.dims, path=join(path, "permutation"),
        node=item, key="permutation")
  if "split" in item:
    fields["split"] = _parse_split(item, ctx, path, constraint)
  fields.update(_parse_keep_bypass(item, ctx, path))
  for name in ("no_multicast", "no_multicast_no_reduction"):
    if name in item:
      fields["no_multicast"] = fields.get("no_multicast", ()) + \
          _parse_dataspaces(item[name], ctx, join(path, name), item, name)
  if "min" in item:
    m = item["min"]
    if isinstance(m, bool) or not isinstance(m, (int, float)) or m < 0:
      raise fail(f"expected a non-negative number, found {describe(m)}",
                 path=join(path, "min"), node=item, key="min")
    fields["min"] = float(m)
  return fields


def _parse_split(item: dict, ctx: Context, path: str, constraint: bool) -> int:
  """A spatial directive's ``split``: how many permutation dims (innermost
  first) fan out along X; the rest fan out along Y."""
  split = item["split"]
  if isinstance(split, str) and constraint:
    split = _split_expression(split, ctx, item, path)
  if isinstance(split, bool) or not isinstance(split, int) or split < 0:
    raise fail(f"expected a non-negative integer, found {describe(split)}",
               path=join(path, "split"), node=item, key="split",
               hint="split = how many permutation dims go to the X axis.")
  # Constraints may say split: 999 ("everything on X"); a mapping may not.
  if split > len(ctx.dims) and not constraint:
    raise fail(f"expected a split between 0 and {len(ctx.dims)} (the "
               f"number of dimensions), found {split}",
               path=join(path, "split"), node=item, key="split",
               hint="split = how many permutation dims go to the X axis; "
               f"{len(ctx.dims)} puts them all on X.")
  return split


def _split_expression(text: str, ctx: Context, item: dict, path: str):
  """A constraint's ``split`` written as a front-end expression over the
  spec, e.g. ``len(spec.problem.instance)`` (Timeloop's front end evaluates
  it in Python; here ``spec.problem.instance`` and ``len`` are known)."""
  from jaxloop.spec import expr
  spec = types.SimpleNamespace(problem=types.SimpleNamespace(
      instance=dict(ctx.instance)))
  try:
    return expr.evaluate(text, {"spec": spec})
  except expr.ExprError as e:
    raise fail(f"cannot evaluate the split expression {text!r}: {e}",
               path=join(path, "split"), node=item, key="split",
               hint="Give split as a number (how many permutation dims go "
                    "to the X axis).") from None


def _parse_keep_bypass(item: dict, ctx: Context, path: str) -> dict:
  """The ``keep`` and ``bypass`` data space lists given; no data space may
  be in both."""
  fields = {name: _parse_dataspaces(item[name], ctx, join(path, name), item,
                                    name)
            for name in ("keep", "bypass") if name in item}
  if fields.get("keep") and fields.get("bypass"):
    both = [n for n in fields["keep"] if n in fields["bypass"]]
    if both:
      raise fail(f"expected each data space in 'keep' or in 'bypass', found "
                 f"{', '.join(repr(b) for b in both)} in both",
                 path=join(path, "bypass"), node=item, key="bypass",
                 hint=f"Remove '{both[0]}' from one of the two lists.")
  return fields


def _parse_target(item: dict, ctx: Context, path: str) -> str:
  if "target" not in item:
    raise fail("missing 'target'", path=join(path, "target"), node=item,
               hint="Name the storage level, e.g. 'target: GlobalBuffer'.")
  target = item["target"]
  if not isinstance(target, str):
    raise fail(f"expected a level name, found {describe(target)}",
               path=join(path, "target"), node=item, key="target")
  aliases = dict(ctx.aliases)
  if target in ctx.targets:
    return target
  if target in aliases:
    return aliases[target]
  if f"inter_{target}_spatial" in ctx.targets:  # a v0.4 spatial container
    return f"inter_{target}_spatial"
  hint = suggest(target, list(ctx.targets) + list(aliases))
  listing = "Levels: " + ", ".join(reversed(ctx.targets))
  raise fail(f"no storage level named '{target}'", path=join(path, "target"),
             node=item, key="target",
             hint=f"{hint} ({listing})" if hint else listing)


def _check_type_fields(dtype: str, fields: dict, item: dict,
                       path: str) -> None:
  """Rejects fields that make no sense for the directive type."""
  allowed = {
      "temporal": {"factors", "factor_bounds", "permutation"},
      "spatial": {"factors", "factor_bounds", "permutation", "split",
                  "no_multicast"},
      "bypass": {"keep", "bypass", "no_multicast"},
      "utilization": {"min"},
      "parallelism": {"min"},
  }[dtype]
  for f, v in fields.items():
    if f not in allowed and v not in (None, ()):
      key = "no_multicast" if f == "no_multicast" else f
      raise fail(f"'{key}' does not apply to a {dtype} directive",
                 path=join(path, key), node=item,
                 key=key if key in item else None,
                 hint="Put it in a separate directive with the right type.")


def parse_factors(value: object, dims: Sequence[str], *, path: str,
                  node: object = None, key: object = None,
                  constraint: bool = False):
  """Parses any ``factors`` form.

  Args:
    value: ``"R=3 P=16"``, ``"R=3,P=16"``, ``"R3 P16"``, ``[R=3, P=16]``,
      ``{R: 3}``; constraints also ``M<=4``/``M>=2``.
    dims: valid dimension names.
    path, node, key: location for messages.
    constraint: allow bounds and 0 (unconstrained).

  Returns:
    ``(factors, factor_bounds)``: ``((dim, value), ...)`` exact values and
    ``((dim, op, value), ...)`` bounds.
  """
  loc = {"path": path, "node": node, "key": key}
  if isinstance(value, dict):
    entries = [(str(k), "=", v) for k, v in value.items()]
  elif isinstance(value, (str, list)):
    entries = _factor_list_entries(value, loc, constraint)
  elif value is None:
    return None, ()
  else:
    raise fail(f"expected factors like 'R=3 P=16', found {describe(value)}",
               **loc)
  return _split_factor_entries(entries, dims, loc, constraint)


def _factor_list_entries(value, loc: dict, constraint: bool
                         ) -> list[tuple[str, str, object]]:
  """``(dim, op, value)`` entries of a factors string or list: the entries
  of ``{dim: value}`` items first, then the ``DIM=VALUE`` tokens of the
  strings (separated by spaces or commas)."""
  entries: list[tuple[str, str, object]] = []
  tokens: list[str] = []
  for part in (value if isinstance(value, list) else [value]):
    if isinstance(part, dict):
      entries.extend((str(k), "=", v) for k, v in part.items())
      continue
    if not isinstance(part, str):
      raise fail(f"expected factor entries like 'R=3', found "
                 f"{describe(part)}", **loc)
    text = re.sub(r"\s*(<=|>=|=)\s*", r"\1", part)
    tokens.extend(t for t in re.split(r"[\s,]+", text.strip()) if t)
  return entries + [_factor_token(tok, loc, constraint) for tok in tokens]


def _factor_token(tok: str, loc: dict, constraint: bool
                  ) -> tuple[str, str, int]:
  """``R=3`` / ``R3`` / (constraints) ``R<=3``, ``R>=3`` as ``(dim, op,
  value)``."""
  m = _BOUND_TOKEN.match(tok) or _GLUED_TOKEN.match(tok)
  num = None if m else _NUMBER_TOKEN.match(tok)
  if num:
    what = "a non-negative integer" if constraint else "a positive integer"
    raise fail(f"factor {num.group(1)}: expected {what}, found "
               f"{num.group(3)} (a number)", **loc,
               hint="Factors are whole loop bounds; jaxloop (like Timeloop) "
               "needs integer factors.")
  if not m:
    raise fail(f"cannot read factor '{tok}': expected DIM=VALUE", **loc,
               hint="Write factors as 'R=3 P=16', 'R3 P16' or [R=3, P=16].")
  if len(m.groups()) == 3:
    return m.group(1), m.group(2), int(m.group(3))
  return m.group(1), "=", int(m.group(2))


def _split_factor_entries(entries, dims: Sequence[str], loc: dict,
                          constraint: bool):
  """Validates ``(dim, op, value)`` entries: known dims, integer values (at
  least 1; 0 = unconstrained in constraints), bounds only in constraints,
  one exact factor per dim.  Returns ``(factors, factor_bounds)``."""
  factors: list[tuple[str, int]] = []
  bounds: list[tuple[str, str, int]] = []
  seen: set = set()
  for dim, op, v in entries:
    if dim not in dims:
      raise fail(f"'{dim}' is not a problem dimension", **loc,
                 hint=suggest(dim, dims) or "Dimensions: " + ", ".join(dims))
    if isinstance(v, float) and v.is_integer():
      v = int(v)
    lowest = 0 if constraint else 1
    if isinstance(v, bool) or not isinstance(v, int) or v < lowest:
      what = "a non-negative integer (0 = unconstrained)" if constraint \
          else "a positive integer"
      raise fail(f"factor {dim}: expected {what}, found {describe(v)}", **loc)
    if op != "=" and not constraint:
      raise fail(f"factor bound '{dim}{op}{v}' is only allowed in "
                 "constraints", **loc,
                 hint=f"A mapping needs an exact factor, e.g. '{dim}={v}'.")
    if (dim, op) in seen or (op == "=" and any(d == dim for d, _ in seen)):
      raise fail(f"factor for '{dim}' given twice", **loc,
                 hint=f"Give one factor per dimension, e.g. '{dim}=4'.")
    seen.add((dim, op))
    if op == "=":
      factors.append((dim, v))
    else:
      bounds.append((dim, op, v))
  return tuple(factors), tuple(bounds)


def parse_permutation(value: object, dims: Sequence[str], *, path: str,
                      node: object = None, key: object = None
                      ) -> tuple[str, ...]:
  """Parses ``"PRKC"`` / ``"P R K C"`` / ``[P, R, K, C]`` (innermost first).
  """
  if isinstance(value, str):
    text = value.strip()
    if re.search(r"[\s,]", text):
      names = [t for t in re.split(r"[\s,]+", text) if t]
    elif text in dims:
      names = [text]
    else:
      names = list(text)
  elif isinstance(value, list):
    names = value
  elif value is None:
    return ()
  else:
    raise fail(f"expected a permutation like 'PRKC' or [P, R, K, C], found "
               f"{describe(value)}", path=path, node=node, key=key)
  out: list[str] = []
  for n in names:
    if not isinstance(n, str) or n not in dims:
      hint = suggest(n, dims) if isinstance(n, str) else ""
      if isinstance(value, str) and any(len(d) > 1 for d in dims):
        hint = (hint + " " if hint else "") + \
            "Multi-letter dimension names need the list form [A, B, ...]."
      raise fail(f"'{n}' in the permutation is not a problem dimension",
                 path=path, node=node, key=key,
                 hint=hint or "Dimensions: " + ", ".join(dims))
    if n in out:
      raise fail(f"'{n}' appears twice in the permutation", path=path,
                 node=node, key=key, hint="List each dimension at most once "
                 "(innermost first); unlisted dims go outermost.")
    out.append(n)
  return tuple(out)


def _parse_dataspaces(value: object, ctx: Context, path: str, node: dict,
                      key: str) -> tuple[str, ...]:
  if value is None:
    return ()
  if isinstance(value, str):
    value = [value]
  value = require_list(value, path=path, parent=node, key=key,
                       what="a list of data space names")
  out = []
  for i, name in enumerate(value):
    if name not in ctx.dataspaces:
      raise fail(f"'{name}' is not a data space of the problem",
                 path=join(path, i), node=value, key=i,
                 hint=suggest(name, ctx.dataspaces) or
                 "Data spaces: " + ", ".join(ctx.dataspaces))
    if name not in out:
      out.append(name)
  return tuple(out)


def dummy_defaults(existing: Sequence[Directive], arch: Architecture,
                   problem: Problem, where: str = "") -> tuple[Directive, ...]:
  """Directives Timeloop's front end adds for storage-less dummy levels.

  For each ``inter_*_spatial`` level without them: a temporal directive
  with every factor 1, and a bypass of every data space.

  Args:
    existing: the directives already present.
    arch: the architecture.
    problem: the workload.
    where: location to attach to the added directives.

  Returns:
    The directives to append (may be empty).
  """
  have = {(d.target, d.type) for d in existing}
  out = []
  for level in reversed(arch.storage):
    if not level.is_dummy:
      continue
    if (level.name, "temporal") not in have:
      out.append(Directive(
          target=level.name, type="temporal",
          factors=tuple((d, 1) for d in problem.dims),
          permutation=tuple(problem.dims), where=where))
    if (level.name, "bypass") not in have:
      out.append(Directive(
          target=level.name, type="bypass",
          bypass=tuple(d.name for d in problem.dataspaces), where=where))
  return tuple(out)

