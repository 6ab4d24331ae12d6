"""Reads Timeloop's ``problem:`` section into a :class:`Problem`."""
from __future__ import annotations

import warnings
from typing import Mapping, Optional

from jaxloop.errors import UnsupportedFeatureError
from jaxloop.spec import expr
from jaxloop.spec import yamlio
from jaxloop.spec.diagnostics import (check_keys, describe, fail, join,
                                      require_list, require_mapping, suggest)
from jaxloop.spec.types import DataSpace, Problem

PROBLEM_KEYS = ("version", "shape", "instance")
SHAPE_KEYS = ("version", "name", "dimensions", "coefficients", "data_spaces",
              "data-spaces")
DATASPACE_KEYS = ("name", "projection", "read_write", "read-write")
COEFFICIENT_KEYS = ("name", "default")
IGNORED_INSTANCE_KEYS = ("H", "W", "Hpad", "Wpad")
# Timeloop keeps bounds in a C int; the product (the MAC count) must stay
# exact in the float64 arithmetic of the model.
MAX_BOUND = 2**31 - 1
MAX_OPS = 2**53


def parse_problem(node: object, path: str = "problem",
                  variables: Optional[Mapping[str, object]] = None) -> Problem:
  """Builds a Problem from a ``problem:`` mapping.

  Accepts v0.4 (``version: 0.4``) and v0.3 (no version) forms.

  Args:
    node: the value of the ``problem`` key.
    path: key path for messages.
    variables: top-level ``variables`` usable in instance expressions.

  Returns:
    The problem.

  Raises:
    SpecError: malformed input.
    UnsupportedFeatureError: sparse densities.
  """
  node = require_mapping(node, path=path, what="a mapping with 'shape' and "
                         "'instance'")
  check_keys(node, PROBLEM_KEYS, path=path, what="the problem")
  for key in ("shape", "instance"):
    if key not in node:
      raise fail(f"missing '{key}'", path=join(path, key), node=node,
                 hint="A problem needs 'shape' (dimensions, data_spaces) and "
                 "'instance' (the dimension bounds).")
  shape = require_mapping(node["shape"], path=join(path, "shape"),
                          parent=node, key="shape")
  check_keys(shape, SHAPE_KEYS, path=join(path, "shape"), what="the shape")
  spath = join(path, "shape")
  dims = _parse_dims(shape, spath)
  coef_defaults = _parse_coefficients(shape, spath, dims)
  instance = require_mapping(node["instance"], path=join(path, "instance"),
                             parent=node, key="instance")
  bounds, coefs = _parse_instance(instance, join(path, "instance"), dims,
                                  coef_defaults, variables or {})
  dataspaces = _parse_dataspaces(shape, spath, dims, coefs)
  name = shape.get("name", "")
  return Problem(
      name=str(name) if name is not None else "",
      dims=tuple(dims),
      bounds=tuple(bounds[d] for d in dims),
      dataspaces=dataspaces,
      coefficients=tuple(coefs.items()),
      source=yamlio.where(node))


def _parse_dataspaces(shape: dict, spath: str, dims: list[str],
                      coefs: dict[str, int]) -> tuple[DataSpace, ...]:
  """The shape's ``data_spaces`` (tensors): at least one, unique names."""
  ds_key = "data_spaces" if "data_spaces" in shape else "data-spaces"
  if ds_key not in shape:
    raise fail("missing 'data_spaces'", path=join(spath, "data_spaces"),
               node=shape, hint="List the tensors, e.g. "
               "[{name: Weights, projection: [[[R]]]}, ...].")
  dspath = join(spath, ds_key)
  ds_list = require_list(shape[ds_key], path=dspath, parent=shape,
                         key=ds_key)
  if not ds_list:
    raise fail("expected at least one data space, found none", path=dspath,
               node=shape, key=ds_key)
  dataspaces = [_parse_dataspace(ds, join(dspath, i), ds_list, i, dims, coefs)
                for i, ds in enumerate(ds_list)]
  names = [d.name for d in dataspaces]
  for i, n in enumerate(names):
    if n in names[:i]:
      raise fail(f"duplicate data space name '{n}' (also data space "
                 f"{names.index(n)})", path=join(dspath, i),
                 node=ds_list, key=i,
                 hint="Data space names must be unique; rename one.")
  return tuple(dataspaces)


def _parse_dims(shape: dict, spath: str) -> list[str]:
  if "dimensions" not in shape:
    raise fail("missing 'dimensions'", path=join(spath, "dimensions"),
               node=shape, hint="e.g. dimensions: [C, M, R, S, N, P, Q]")
  dpath = join(spath, "dimensions")
  raw = shape["dimensions"]
  if isinstance(raw, str):  # "[C, M]" written as a plain string
    raw = [d.strip() for d in raw.strip("[] ").replace(",", " ").split()]
  raw = require_list(raw, path=dpath, parent=shape, key="dimensions",
                     what="a list of dimension names")
  dims = []
  for i, d in enumerate(raw):
    if not isinstance(d, str) or not d.isidentifier():
      raise fail(f"expected a dimension name, found {describe(d)}",
                 path=join(dpath, i), node=raw, key=i)
    if d in dims:
      raise fail(f"duplicate dimension '{d}' (also at position "
                 f"{dims.index(d)})", path=join(dpath, i), node=raw, key=i,
                 hint="Each dimension is listed once; rename or remove one.")
    dims.append(d)
  if not dims:
    raise fail("expected at least one dimension, found none", path=dpath,
               node=shape, key="dimensions")
  return dims


def _parse_coefficients(shape: dict, spath: str,
                        dims: list[str]) -> dict[str, object]:
  out: dict[str, object] = {}
  raw = shape.get("coefficients") or []
  cpath = join(spath, "coefficients")
  raw = require_list(raw, path=cpath, parent=shape, key="coefficients",
                     what="a list of {name, default}")
  for i, c in enumerate(raw):
    ipath = join(cpath, i)
    c = require_mapping(c, path=ipath, parent=raw, key=i,
                        what="a mapping {name: ..., default: ...}")
    check_keys(c, COEFFICIENT_KEYS, path=ipath, what="a coefficient")
    name = c.get("name")
    if not isinstance(name, str) or not name:
      raise fail(f"expected a coefficient name, found {describe(name)}",
                 path=join(ipath, "name"), node=c, key="name")
    if name in dims:
      raise fail(f"coefficient '{name}' has the name of a dimension",
                 path=join(ipath, "name"), node=c, key="name",
                 hint="Coefficient and dimension names must differ.")
    if name in out:
      raise fail(f"duplicate coefficient '{name}'", path=join(ipath, "name"),
                 node=c, key="name",
                 hint="Declare each coefficient once; set its value in the "
                 "instance.")
    out[name] = c.get("default", 1)
  return out


def _int_value(value: object, *, path: str, node: dict, key: object,
               variables: Mapping[str, object], what: str,
               minimum: int) -> int:
  if isinstance(value, str):
    try:
      value = expr.evaluate(value, variables)
    except expr.ExprError as e:
      raise fail(f"expected {what}, found {describe(value)} ({e})",
                 path=path, node=node, key=key) from None
  if isinstance(value, float) and value.is_integer():
    value = int(value)
  if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
    raise fail(f"expected {what}, found {describe(value)}", path=path,
               node=node, key=key)
  if value > MAX_BOUND:
    raise fail(f"expected {what} of at most {MAX_BOUND}, found {value}",
               path=path, node=node, key=key,
               hint="Timeloop stores bounds and coefficients as 32-bit "
               "integers.")
  return value


def _parse_instance(instance: dict, ipath: str, dims: list[str],
                    coef_defaults: dict[str, object],
                    variables: Mapping[str, object]):
  """The instance's dimension bounds and coefficient values.

  Returns:
    ``(bounds, coefs)``: ``{dim: bound}`` (every dim, product at most 2^53)
    and ``{coefficient: value}`` (the instance's value or the default).
  """
  values = _instance_values(instance, ipath, dims, coef_defaults)
  bounds = _bounds(instance, ipath, dims, values, variables)
  coefs: dict[str, int] = {}
  for c, default in coef_defaults.items():
    if c in values:
      key, value = values[c]
      coefs[c] = _int_value(value, path=join(ipath, key), node=instance,
                            key=key, variables=variables,
                            what="an integer coefficient", minimum=0)
    else:
      coefs[c] = _int_value(default, path=join(ipath, c), node=instance,
                            key=None, variables=variables,
                            what="an integer coefficient default",
                            minimum=0)
  return bounds, coefs


def _instance_values(instance: dict, ipath: str, dims: list[str],
                     coef_defaults: dict[str, object]) -> dict:
  """``{dim or coefficient: (instance key, raw value)}``.

  Keys are matched case-insensitively when there is no exact match (a
  later key overrides an earlier one for the same name); keys near a known
  name are errors; other keys are ignored (Timeloop ignores them too), with
  a warning unless they are the usual conv extras.  ``densities`` must
  describe dense tensors.
  """
  known = list(dims) + list(coef_defaults)
  values: dict[str, object] = {}
  for key, value in instance.items():
    if key == "densities":
      _check_densities(value, join(ipath, key), instance)
      continue
    name = key if key in known else _folded_name(instance, ipath, key, known,
                                                 dims)
    if name is None:
      continue
    if name in values and name != key:
      # e.g. problem_base sets Hstride: 1 and a layer file (merged with
      # `<<<:`) sets HStride: 4; the later, layer-specific key wins.  (Timeloop
      # itself would ignore HStride and keep 1.)
      warnings.warn(
          f"{yamlio.where(instance, key)}: {join(ipath, key)}: '{key}' "
          f"overrides '{values[name][0]}: {values[name][1]}'", stacklevel=4)
    values[name] = (key, value)
  return values


def _folded_name(instance: dict, ipath: str, key: object, known: list[str],
                 dims: list[str]) -> Optional[str]:
  """The dim or coefficient an unknown instance key names, matched
  case-insensitively (with a warning); None for a key to ignore."""
  folded = [k for k in known if k.lower() == str(key).lower()]
  if folded:
    warnings.warn(
        f"{yamlio.where(instance, key)}: {join(ipath, key)}: instance key "
        f"'{key}' matches no dimension or coefficient; using "
        f"'{folded[0]}' (case-insensitive match)", stacklevel=5)
    return folded[0]
  hint = suggest(key, known)
  if hint:
    raise fail(f"'{key}' is neither a dimension nor a coefficient of "
               "the shape", path=join(ipath, key), node=instance,
               key=key, hint=hint)
  # Timeloop ignores extra instance keys (conv specs carry H, W, Hpad,
  # Wpad for documentation); so do we, noisily for unfamiliar ones.
  if key not in IGNORED_INSTANCE_KEYS:
    warnings.warn(
        f"{yamlio.where(instance, key)}: {join(ipath, key)}: ignoring "
        f"'{key}', which is neither a dimension ({', '.join(dims)}) nor "
        "a coefficient", stacklevel=5)
  return None


def _bounds(instance: dict, ipath: str, dims: list[str], values: dict,
            variables: Mapping[str, object]) -> dict[str, int]:
  """``{dim: bound}``: a positive integer (or expression) for every dim,
  their product (the MAC count) exact in float64."""
  bounds: dict[str, int] = {}
  for d in dims:
    if d not in values:
      raise fail(f"no bound given for dimension '{d}'", path=join(ipath, d),
                 node=instance,
                 hint=f"Add '{d}: <bound>' to the instance (use 1 for an "
                 "unused dimension).")
    key, value = values[d]
    bounds[d] = _int_value(value, path=join(ipath, key), node=instance,
                           key=key, variables=variables,
                           what="a positive integer bound", minimum=1)
  total = 1
  for b in bounds.values():
    total *= b
  if total > MAX_OPS:
    raise fail(f"expected the product of the bounds (the MAC count) to be "
               f"at most 2^53, found {total}", path=ipath, node=instance,
               hint="Counts would no longer be exact in 64-bit floats; split "
               "the layer.")
  return bounds


def _check_densities(value: object, path: str, instance: dict) -> None:
  """Only dense tensors are modelled: empty or all-1.0 densities pass."""
  if value in (None, {}, []):
    return
  value = require_mapping(value, path=path, parent=instance,
                          key="densities")
  for name, d in value.items():
    density = d.get("density", 1.0) if isinstance(d, dict) else d
    dist = d.get("distribution", "") if isinstance(d, dict) else ""
    if isinstance(density, (int, float)) and not isinstance(density, bool) \
        and float(density) == 1.0 and dist in ("", None, "dense", "fixed",
                                                "fixed-structured",
                                                "hypergeometric"):
      continue
    raise UnsupportedFeatureError(
        f"sparse densities ({name}: {d!r}); jaxloop models dense tensors only",
        path=join(path, name), where=yamlio.where(value, name))


def _parse_dataspace(ds: object, dpath: str, parent: list, index: int,
                     dims: list[str], coefs: dict[str, int]) -> DataSpace:
  ds = require_mapping(ds, path=dpath, parent=parent, key=index,
                       what="a mapping {name, projection, read_write}")
  check_keys(ds, DATASPACE_KEYS, path=dpath, what="a data space")
  name = ds.get("name")
  if not isinstance(name, str) or not name:
    raise fail(f"expected a data space name, found {describe(name)}",
               path=join(dpath, "name"), node=ds, key="name")
  if "projection" not in ds:
    raise fail("missing 'projection'", path=join(dpath, "projection"),
               node=ds, hint="e.g. projection: [[[C]], [[R], [P]]]")
  ppath = join(dpath, "projection")
  proj = ds["projection"]
  if isinstance(proj, str):
    proj = [proj]
  proj = require_list(proj, path=ppath, parent=ds, key="projection",
                      what="a list of ranks, each a list of [dim] or "
                      "[dim, coefficient] terms")
  ranks = []
  for r, rank in enumerate(proj):
    rpath = join(ppath, r)
    if isinstance(rank, str):  # `- C` shorthand for `- [[C]]`
      rank = [[rank]]
    rank = require_list(rank, path=rpath, parent=proj, key=r,
                        what="a list of terms like [R, Wdilation]")
    terms = []
    for t, term in enumerate(rank):
      terms.append(_parse_term(term, join(rpath, t), rank, t, dims, coefs))
    if not terms:
      raise fail("expected at least one term, found an empty rank",
                 path=rpath, node=proj, key=r)
    ranks.append(tuple(terms))
  rw = ds.get("read_write", ds.get("read-write", False))
  if not isinstance(rw, bool):
    raise fail(f"expected true or false, found {describe(rw)}",
               path=join(dpath, "read_write"), node=ds, key="read_write")
  return DataSpace(name=name, projection=tuple(ranks), read_write=rw)


def _parse_term(term: object, tpath: str, rank: list, index: int,
                dims: list[str], coefs: dict[str, int]) -> tuple[int, int]:
  if isinstance(term, str):
    term = [term]
  if not isinstance(term, list) or not 1 <= len(term) <= 2:
    raise fail(f"expected a term [dim] or [dim, coefficient], found "
               f"{describe(term)}", path=tpath, node=rank, key=index)
  items = list(term)
  if len(items) == 2 and items[0] not in dims and items[1] in dims:
    items.reverse()  # [coefficient, dim] is accepted too
  dim = items[0]
  if dim not in dims:
    raise fail(f"'{dim}' is not a dimension of the shape", path=tpath,
               node=rank, key=index,
               hint=suggest(dim, dims) or "Dimensions: " + ", ".join(dims))
  coef = 1
  if len(items) == 2:
    c = items[1]
    if isinstance(c, bool):
      raise fail(f"expected a coefficient, found {describe(c)}", path=tpath,
                 node=rank, key=index)
    if isinstance(c, int):
      coef = c
    elif isinstance(c, str) and c in coefs:
      coef = coefs[c]
    else:
      raise fail(f"'{c}' is not a coefficient of the shape", path=tpath,
                 node=rank, key=index,
                 hint=suggest(c, coefs) or ("Declare it under "
                                            "shape.coefficients."))
  return (coef, dims.index(dim))
