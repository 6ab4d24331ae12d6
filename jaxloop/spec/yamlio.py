"""YAML loading that remembers where every mapping and list came from.

Mappings load as :class:`YDict` and lists as :class:`YList`; both carry
``where`` (``file:line``) and the line of each key or item, so that errors can
point at the offending line.  The loader also understands what Timeloop's
front end feeds its YAML through:

* the v0.4 node tags ``!Container``, ``!Component``, ``!Parallel``,
  ``!Hierarchical``, ``!Nothing`` (any ``!Tag``): a tagged mapping becomes a
  dict whose ``_tag`` key holds the tag name;
* the recursive merge key ``<<<:`` (like ``<<:`` but merging nested
  mappings key by key, as the ``layer_shapes`` files use it);
* the Jinja line ``{{include_text('file.yaml')}}``, replaced by the text of
  that file (relative to the including file).  Other Jinja is rejected.
"""
from __future__ import annotations

import copy
import os
import re
from typing import Iterable, Sequence, Union

import yaml

from jaxloop.errors import SpecError, UnsupportedFeatureError

PathLike = Union[str, "os.PathLike[str]"]

_INCLUDE_RE = re.compile(
    r"""^\s*\{\{\s*include_text\(\s*(['"])(?P<path>[^'"]+)\1\s*\)\s*\}\}\s*$""")
_JINJA_RE = re.compile(r"\{\{|\{%")
_MAX_INCLUDE_DEPTH = 16
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
  """Preprocessed text plus, per line, the file and line it came from."""

  def __init__(self, path: str):
    self.path = path
    self.lines: list[str] = []
    self.origin: list[tuple[str, int]] = []

  def locate(self, line0: int) -> str:
    """``file:line`` of a 0-based line of the preprocessed text."""
    if not self.origin:
      return self.path
    line0 = max(0, min(line0, len(self.origin) - 1))
    name, line = self.origin[line0]
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


def _preprocess(path: str, text: str, source: _Source, depth: int) -> None:
  """Appends ``text`` to ``source``, expanding ``include_text`` lines."""
  for i, line in enumerate(text.splitlines()):
    here = f"{path}:{i + 1}"
    m = _INCLUDE_RE.match(line)
    if m:
      if depth >= _MAX_INCLUDE_DEPTH:
        raise SpecError(
            f"expected include_text to end within {_MAX_INCLUDE_DEPTH} "
            "levels, found deeper nesting (an include cycle?)",
            path="include_text", where=here,
            hint="Check that no file includes itself, directly or through "
            "another file.")
      inc = os.path.join(os.path.dirname(path), m.group("path"))
      _preprocess(inc, _read_text(inc, here), source, depth + 1)
      continue
    jinja = _JINJA_RE.search(line)
    if jinja and "#" not in line[:jinja.start()]:
      snippet = line.strip()
      raise UnsupportedFeatureError(
          f"Jinja templating ('{snippet}'); only "
          "{{include_text('file')}} lines are expanded. Render the template "
          "first (e.g. with timeloopfe) and pass the result",
          path="(template)", where=here)
    source.lines.append(line)
    source.origin.append((path, i + 1))


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
  """SafeLoader producing YDict/YList with locations (one per file)."""

  source: _Source

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


_Loader.add_constructor("tag:yaml.org,2002:map", _construct_map)
_Loader.add_constructor("tag:yaml.org,2002:seq", _construct_seq)
_Loader.add_multi_constructor("!", _construct_tagged)


def parse_yaml_text(text: str, name: str = "<string>") -> object:
  """Parses YAML text (with include_text relative to ``name``'s folder)."""
  source = _Source(name)
  _preprocess(name, text, source, 0)
  loader = _Loader("\n".join(source.lines) + "\n")
  loader.source = source
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


def load_yaml_file(path: PathLike) -> YDict:
  """Loads one file into a YDict (an empty file gives an empty one).

  Raises:
    SpecError: missing file, syntax error, or a top level that is not a
      mapping.
  """
  name = os.fspath(path)
  data = parse_yaml_text(_read_text(name), name)
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


def load_yaml_files(paths: Iterable[PathLike]) -> YDict:
  """Loads and merges several files (see :func:`merge_documents`)."""
  return merge_documents([load_yaml_file(p) for p in paths])


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

