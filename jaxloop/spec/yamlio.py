"""YAML loading that remembers where every mapping and list came from.

Mappings load as :class:`YDict` and lists as :class:`YList`; both carry
``where`` (``file:line``) and the line of each key or item, so that errors can
point at the offending line.  The loader also understands what Timeloop's
front end feeds its YAML through:

* the v0.4 node tags ``!Container``, ``!Component``, ``!Parallel``,
  ``!Hierarchical``, ``!Nothing`` (any ``!Tag``): a tagged mapping becomes a
  dict whose ``_tag`` key holds the tag name;
* merge keys: ``<<:`` (keys written out override merged ones) and the
  recursive ``<<<:`` (nested mappings merge key by key, lists concatenate;
  the ``layer_shapes`` files use it);
* Jinja templates (``*.jinja2``, or files holding ``{{``/``{%``), rendered
  with the caller's variables and Timeloop's template functions
  (``include``, ``include_text``, ... see :mod:`jaxloop.spec.templates`);
  ``include`` places another file's YAML by the tag
  ``!include_loaded NAME``; ``!include FILE`` and ``!includedir DIR`` read
  files relative to the including one.
"""
from __future__ import annotations

import copy
import glob
import os
from typing import Iterable, Mapping, Optional, Sequence, Union

import yaml

from jaxloop.errors import SpecError
from jaxloop.spec import templates

PathLike = Union[str, "os.PathLike[str]"]

_MERGE_TAG = "tag:yaml.org,2002:merge"

# Top-level keys whose lists are concatenated (not replaced) across files.
_CONCAT_LISTS = ("mapping",)
_CONCAT_TARGETS = ("architecture_constraints", "mapspace_constraints",
                   "constraints", "extra_mapping_constraints")


class YDict(dict):
  """A mapping that knows its ``file:line`` and the line of each key."""

  def __init__(self, *args, **kwargs):
    super().__init__(*args, **kwargs)
    self.where = ""
    self.key_where: dict = {}


class YList(list):
  """A list that knows its ``file:line`` and the line of each item."""

  def __init__(self, *args, **kwargs):
    super().__init__(*args, **kwargs)
    self.where = ""
    self.item_where: list = []


def where(node: object, key: object = None) -> str:
  """``file:line`` of ``node[key]`` (or of ``node``), or ``""``."""
  if isinstance(node, YDict):
    if key is not None and key in node.key_where:
      return node.key_where[key]
    return node.where
  if isinstance(node, YList):
    if isinstance(key, int) and 0 <= key < len(node.item_where):
      return node.item_where[key]
    return node.where
  return ""


class _Source:
  """The text parsed plus, per line, the file and line it came from."""

  def __init__(self, path: str, text: str, origins: Optional[list] = None):
    self.path = path
    self.lines = max(1, len(text.splitlines()))
    self.origins = origins or []

  def locate(self, line0: int) -> str:
    """``file:line`` of a 0-based line of the parsed text (the end of the
    text counts as its last line)."""
    line0 = max(0, min(line0, self.lines - 1))
    if not self.origins:
      return f"{self.path}:{line0 + 1}"
    name, line = self.origins[min(line0, len(self.origins) - 1)]
    return f"{name}:{line}"


def _read_text(path: str, where_from: str = "") -> str:
  try:
    with open(path, encoding="utf-8") as f:
      return f.read()
  except FileNotFoundError:
    raise SpecError(f"file not found: '{path}'", path="", where=where_from,
                    hint="Check the path (relative paths are taken from the "
                    "current directory, includes from the including file)."
                    ) from None
  except IsADirectoryError:
    raise SpecError(f"expected a YAML file, found a directory: '{path}'",
                    where=where_from,
                    hint="Pass the individual *.yaml files.") from None
  except (OSError, UnicodeDecodeError) as e:
    raise SpecError(f"cannot read '{path}': {e}", where=where_from) from None


def _deep_merge(into: object, base: object) -> object:
  """The ``<<<:`` merge of Timeloop's loader (Accelergy's ``merge``): the
  keys of ``base`` that ``into`` lacks are added; where both hold mappings
  they merge recursively, where both hold lists ``into``'s items come first
  and ``base``'s follow; otherwise ``into``'s value stays.  Keys keep
  ``base``'s order, ``into``'s own keys follow (so a layer's ``HStride``
  comes after the base's ``Hstride``)."""
  out = copy.deepcopy(base)
  if isinstance(into, YDict):
    out = YDict(out)
    out.where = into.where
    out.key_where = dict(getattr(base, "key_where", {}))
  for k, v in into.items():
    if k in out and isinstance(out[k], dict) and isinstance(v, dict):
      v = _deep_merge(v, out[k])
    elif k in out and isinstance(out[k], list) and isinstance(v, list):
      v = _concat(v, out[k])
    out[k] = v
    if isinstance(into, YDict) and k in into.key_where:
      out.key_where[k] = into.key_where[k]
  return out


def _deep_merge_base(value: object, where_: str) -> dict:
  """The mapping under ``<<<:``: a mapping, or a list of mappings merged in
  order (as Timeloop's loader takes them)."""
  items = value if isinstance(value, list) else [value]
  combined = YDict()
  for item in items:
    if not isinstance(item, dict):
      raise SpecError(
          "'<<<:' needs a mapping or a list of mappings (usually an alias "
          f"like *problem_base), found {type(item).__name__}", path="<<<",
          where=where_)
    combined = _deep_merge(combined, item)
  return combined


class _Loader(yaml.SafeLoader):
  """SafeLoader producing YDict/YList with locations (one per file); the
  session and depth serve ``!include``, ``included`` the rendered
  template's ``!include_loaded`` tags."""

  source: _Source
  session: templates.Session
  depth: int = 0
  included: dict

  def loc(self, mark) -> str:
    return self.source.locate(mark.line)


def _construct_map(loader: _Loader, node: yaml.MappingNode) -> YDict:
  """A mapping with locations.  ``<<:`` merge keys take the mapping(s) they
  name, keys written out override merged ones (YAML's merge-key rules);
  ``<<<:`` merges recursively (:func:`_deep_merge`).  A key written out
  twice is an error."""
  data = YDict()
  data.where = loader.loc(node.start_mark)
  written = {id(k) for k, _ in node.value if k.tag != _MERGE_TAG}
  loader.flatten_mapping(node)  # merged entries first, then written ones
  explicit: set = set()
  deep_merge_base = None
  merge_where = ""
  for key_node, value_node in node.value:
    key = loader.construct_object(key_node, deep=True)
    try:
      hash(key)
    except TypeError:
      raise SpecError(f"a mapping key must be a scalar, found {key!r}",
                      where=loader.loc(key_node.start_mark)) from None
    value = loader.construct_object(value_node, deep=True)
    if key == "<<<" and id(key_node) in written:
      if deep_merge_base is not None:
        raise _duplicate(loader, key, merge_where, key_node)
      deep_merge_base = value
      merge_where = loader.loc(key_node.start_mark)
      continue
    if key in explicit:
      raise _duplicate(loader, key, data.key_where[key], key_node)
    if id(key_node) in written:
      explicit.add(key)
    data.pop(key, None)   # a merged key overridden keeps the written order
    data[key] = value
    data.key_where[key] = loader.loc(key_node.start_mark)
  if deep_merge_base is not None:
    merged = _deep_merge(data, _deep_merge_base(deep_merge_base, merge_where))
    merged.where = data.where
    return merged
  return data


def _duplicate(loader: _Loader, key: object, first: str,
               key_node) -> SpecError:
  return SpecError(
      f"duplicate key '{key}' (first at {first})",
      path=str(key), where=loader.loc(key_node.start_mark),
      hint="YAML keeps only the last one; remove or rename one of them.")


def _construct_seq(loader: _Loader, node: yaml.SequenceNode) -> YList:
  data = YList()
  data.where = loader.loc(node.start_mark)
  for child in node.value:
    data.append(loader.construct_object(child, deep=True))
    data.item_where.append(loader.loc(child.start_mark))
  return data


def _construct_tagged(loader: _Loader, tag_suffix: str, node) -> object:
  """``!Tag`` on a mapping -> dict with ``_tag``; on a scalar -> same."""
  if isinstance(node, yaml.MappingNode):
    data = _construct_map(loader, node)
  elif isinstance(node, yaml.SequenceNode):
    seq = _construct_seq(loader, node)
    data = YDict(nodes=seq)
    data.where = seq.where
  else:
    data = YDict()
    data.where = loader.loc(node.start_mark)
    value = loader.construct_scalar(node)
    if value not in ("", None):
      data["_value"] = value
  tagged = YDict(_tag=tag_suffix)
  tagged.update(data)
  tagged.where = data.where
  tagged.key_where = dict(data.key_where)
  return tagged


def _construct_included(loader: _Loader, node) -> object:
  """``!include_loaded NAME``: what a template's ``include``/``include_all``
  call placed there."""
  name = str(loader.construct_scalar(node)).strip()
  inc = getattr(loader, "included", {}).get(name)
  if inc is None:
    raise SpecError(f"'!include_loaded {name}' names no include() of a "
                    "rendered template", path="!include_loaded",
                    where=loader.loc(node.start_mark),
                    hint="Write {{ include('file.yaml', 'key') }} in a "
                    "template instead of the tag.")
  if not inc.multi:
    return inc.values[0]
  out = YList(inc.values)
  out.where = inc.where
  out.item_where = [getattr(v, "where", "") or templates.display(f)
                    for v, f in zip(inc.values, inc.files)]
  return out


def _construct_include(loader: _Loader, node) -> object:
  """``!include FILE``: the YAML of FILE (relative to this file)."""
  return _include_files(loader, node, directory=False)


def _construct_includedir(loader: _Loader, node) -> YList:
  """``!includedir DIR``: a list, the YAML of each ``DIR/*.yaml``."""
  return _include_files(loader, node, directory=True)


def _include_files(loader: _Loader, node, directory: bool) -> object:
  here = loader.loc(node.start_mark)
  tag = "!includedir" if directory else "!include"
  if loader.depth + 1 > templates.MAX_DEPTH:
    raise SpecError(f"expected {tag} to end within {templates.MAX_DEPTH} "
                    "levels, found deeper nesting (an include cycle?)",
                    path=tag, where=here, hint="Check that no file includes "
                    "itself, directly or through another file.")
  rel = str(loader.construct_scalar(node)).strip().rstrip(",")
  target = os.path.join(os.path.dirname(os.path.abspath(loader.source.path)),
                        rel)
  files = sorted(glob.glob(os.path.join(target, "*.yaml"))) if directory \
      else [target]
  values = YList()
  values.where = here
  for f in files:
    loader.session.files.append(f)
    values.append(_load(f, loader.session, (), loader.depth + 1, here))
    values.item_where.append(here)
  return values if directory else values[0]


_Loader.add_constructor("tag:yaml.org,2002:map", _construct_map)
_Loader.add_constructor("tag:yaml.org,2002:seq", _construct_seq)
_Loader.add_constructor("!include_loaded", _construct_included)
_Loader.add_constructor("!include", _construct_include)
_Loader.add_constructor("!includedir", _construct_includedir)
_Loader.add_multi_constructor("!", _construct_tagged)


def new_session(variables: Optional[Mapping[str, object]] = None
                ) -> templates.Session:
  """The state of one load: the template variables, the files included."""
  return templates.Session(dict(variables or {}), load=_load,
                           read=_read_text)


def parse_yaml_text(text: str, name: str = "<string>",
                    variables: Optional[Mapping[str, object]] = None, *,
                    session: Optional[templates.Session] = None,
                    include_dirs: tuple = (), depth: int = 0) -> object:
  """Parses YAML text of file ``name``, rendering it first when it is a
  template (paths in it are taken from ``name``'s folder).

  Args:
    text: the file's contents.
    name: its path (for templates, includes and messages).
    variables: template variables (ignored when ``session`` is given).
    session: the load this file is part of (default: a new one).
    include_dirs, depth: the including template's search path and depth.
  """
  session = session or new_session(variables)
  origins, included = None, {}
  if templates.is_template(name, text):
    rendered = templates.render(name, text, session, include_dirs, depth)
    text, origins, included = (rendered.text, rendered.origins,
                               rendered.included)
  source = _Source(name, text, origins)
  loader = _Loader(text + "\n")
  loader.source, loader.session, loader.depth = source, session, depth
  loader.included = included
  try:
    return loader.get_single_data()
  except yaml.MarkedYAMLError as e:
    mark = e.problem_mark or e.context_mark
    at = source.locate(mark.line) if mark else name
    what = " ".join(x for x in (e.context, e.problem) if x)
    hint = ("Check indentation, colons and quoting on this line or the one "
            "before.")
    if "recursive" in what:
      hint = ("An alias (*name) refers to the anchor (&name) it sits in; "
              "YAML cannot build a structure that contains itself.")
    elif origins and "{" in what:
      hint += (" In a template, check that each {{ ... }} renders to valid "
               "YAML at its place.")
    raise SpecError(f"YAML syntax error: expected well-formed YAML, found "
                    f"{what}", where=at, hint=hint) from None
  except yaml.YAMLError as e:
    raise SpecError(f"YAML error: {e}", where=name) from None
  except RecursionError:
    raise SpecError("expected YAML of reasonable depth, found nesting too "
                    "deep to read", where=name,
                    hint="Check for runaway nesting or self-referencing "
                    "aliases.") from None
  finally:
    loader.dispose()


def _load(path: str, session: templates.Session, include_dirs: tuple = (),
          depth: int = 0, where_from: str = "") -> object:
  """One file's YAML data, in ``session`` (templates rendered)."""
  name = os.fspath(path)
  shown = templates.display(name) if depth else name
  return parse_yaml_text(_read_text(name, where_from), shown,
                         session=session, include_dirs=include_dirs,
                         depth=depth)


def load_yaml_file(path: PathLike,
                   variables: Optional[Mapping[str, object]] = None, *,
                   session: Optional[templates.Session] = None) -> YDict:
  """Loads one file into a YDict (an empty file gives an empty one).

  Args:
    path: the file (a template is rendered first).
    variables: template variables.
    session: the load this file is part of (its included files are
      recorded there); default a new one with ``variables``.

  Raises:
    SpecError: missing file, syntax error, template error, or a top level
      that is not a mapping.
  """
  name = os.fspath(path)
  data = _load(name, session or new_session(variables))
  if data is None:
    data = YDict()
    data.where = name
  if not isinstance(data, dict):
    found = "a list" if isinstance(data, list) else repr(data)[:40]
    raise SpecError(
        f"expected a mapping of top-level keys (architecture, problem, "
        f"mapping, ...), found {found}", where=f"{name}:1",
        hint="Start the file with a key, e.g. 'mapping:' above a list of "
        "directives.")
  return data


def merge_documents(docs: Sequence[dict]) -> YDict:
  """Merges loaded files by top-level key as Timeloop does.

  A later file's key replaces an earlier one, except that ``mapping`` lists
  and the ``targets`` lists of constraint sections are concatenated.
  """
  out = YDict()
  for doc in docs:
    if not out.where:
      out.where = getattr(doc, "where", "")
    for key, value in doc.items():
      if key in out and key in _CONCAT_LISTS and isinstance(value, list) \
          and isinstance(out[key], list):
        out[key] = _concat(out[key], value)
      elif key in out and key in _CONCAT_TARGETS \
          and isinstance(value, dict) and isinstance(out[key], dict) \
          and isinstance(value.get("targets"), list) \
          and isinstance(out[key].get("targets"), list):
        merged = copy.copy(out[key])
        merged.update(value)
        merged["targets"] = _concat(out[key]["targets"], value["targets"])
        out[key] = merged
      else:
        out[key] = value
      if isinstance(doc, YDict) and key in doc.key_where:
        out.key_where[key] = doc.key_where[key]
  return out


def _concat(a: list, b: list) -> YList:
  out = YList(list(a) + list(b))
  out.where = getattr(a, "where", "") or getattr(b, "where", "")
  wa = list(getattr(a, "item_where", [])) or [""] * len(a)
  wb = list(getattr(b, "item_where", [])) or [""] * len(b)
  out.item_where = wa + wb
  return out


def load_yaml_files(paths: Iterable[PathLike],
                    variables: Optional[Mapping[str, object]] = None) -> YDict:
  """Loads and merges several files (see :func:`merge_documents`);
  ``variables`` are given to the templates among them."""
  session = new_session(variables)
  return merge_documents([load_yaml_file(p, session=session)
                          for p in paths])


def plain(value: object) -> object:
  """Converts YDict/YList trees into hashable tuples for frozen dataclasses.

  Mappings become ``((key, value), ...)``, lists become tuples.
  """
  if isinstance(value, dict):
    return tuple((k, plain(v)) for k, v in value.items()
                 if not str(k).startswith("_"))
  if isinstance(value, list):
    return tuple(plain(v) for v in value)
  return value

