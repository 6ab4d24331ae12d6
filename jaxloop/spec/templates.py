"""Jinja templates in Timeloop's inputs, rendered as Timeloop's front end
renders them (timeloopfe reads every file through Accelergy's YAML loader,
which renders it with jinja2 before parsing).

A file is a template when it is named ``*.jinja``/``*.jinja2`` or holds
``{{`` or ``{%``.  It is rendered with jinja2 (an undefined variable is an
error, as in Timeloop), given the caller's variables and these functions:

* ``cwd()``: the folder of the file being rendered (absolute);
* ``add_to_path(p)``: adds the folder(s) ``p`` (a glob) to the search path
  of this file and of what it includes afterwards;
* ``find_path(p)``, ``find_paths(p)``, ``path_exists(p)``;
* ``include(p, keys='')``: the YAML of file ``p`` (itself rendered), or of
  the value under the dotted ``keys`` (``'problem'``,
  ``'compound_components.classes'``), placed where the call stands;
* ``include_all(glob, keys='')``: the same for every match, as a list
  (one match: its value, as in Timeloop);
* ``include_text(p)``: the rendered text of ``p`` (every match), pasted.

Paths are absolute, or searched relative to the rendering file's folder and
then to each ``add_to_path`` folder; every match counts (``include`` of a
path matching two different files is an error).  Errors become one
:class:`SpecError` naming the template's file and line.
"""
from __future__ import annotations

import difflib
import glob
import os
import re
import sys
import traceback
from dataclasses import dataclass, field
from typing import Callable, Optional

import jinja2

from jaxloop.errors import SpecError, UnsupportedFeatureError

SUFFIXES = (".jinja", ".jinja2")
MAX_DEPTH = 16
_SYNTAX = re.compile(r"\{\{|\{%")
# Text pasted by include_text is wrapped in private-use characters so that
# each rendered line can be traced to the file it came from; the markers are
# removed before the YAML is read.
_BEGIN, _SEP, _END = "\ue000", "\ue001", "\ue002"
_MARKER = re.compile(f"{_BEGIN}(\\d+){_SEP}|{_END}")
# Functions of Timeloop's template environment that jaxloop leaves out.
_LEFT_OUT = {"setenv": "setenv() in templates (it sets environment "
                       "variables of the process); set them before running"}
_UNDEFINED = re.compile(r"^'([^']+)' is undefined$")


def is_template(path: str, text: str) -> bool:
  """Whether ``path`` (with contents ``text``) is rendered before reading."""
  return str(path).endswith(SUFFIXES) or bool(_SYNTAX.search(text))


def display(path: str) -> str:
  """A path as messages show it: relative to the current folder when that
  is shorter."""
  try:
    rel = os.path.relpath(path)
  except ValueError:
    return path
  return rel if len(rel) < len(path) else path


@dataclass
class Included:
  """What one ``include``/``include_all`` call placed in the text.

  Attributes:
    values: the (indexed) YAML of each file found.
    files: those files.
    where: ``file:line`` of the call.
    multi: a list (``include_all`` matching several files) rather than
      one value.
  """
  values: list
  files: list
  where: str
  multi: bool


@dataclass
class Rendered:
  """A rendered file: ``text``, ``origins`` (``(file, line)`` per line of
  ``text``) and what its ``!include_loaded NAME`` tags stand for."""
  text: str
  origins: list
  included: dict


@dataclass
class Session:
  """One load: the variables every file is rendered with, the files read
  through includes, and how a file is read (``load(path, session,
  include_dirs, depth, where) -> YAML data`` and ``read(path, where) ->
  text``, supplied by the YAML reader).
  """
  variables: dict
  load: Callable
  read: Callable
  files: list = field(default_factory=list)
  counter: int = 0

  def name(self) -> str:
    self.counter += 1
    return f"jaxloop_include_{self.counter}"


def render(path: str, text: str, session: Session,
           include_dirs: tuple = (), depth: int = 0) -> Rendered:
  """Renders template ``text`` of file ``path``.

  Raises:
    SpecError: a Jinja syntax error, an undefined variable, a missing or
      ambiguous include, an include cycle; naming the file and line.
    UnsupportedFeatureError: a Timeloop template function left out.
  """
  return _Renderer(path, session, list(include_dirs), depth).run(text)


class _Renderer:
  """Renders one file; its functions see this file's folder and path."""

  def __init__(self, path: str, session: Session, include_dirs: list,
               depth: int):
    self.path = str(path)
    self.real = os.path.realpath(os.path.abspath(self.path))
    self.session = session
    self.dirs = include_dirs
    self.depth = depth
    self.included: dict = {}
    self.pasted: list = []   # origins of each include_text piece

  # -- the functions templates call ---------------------------------------

  def cwd(self) -> str:
    return os.path.dirname(self.real)

  def add_to_path(self, p) -> str:
    self.dirs.extend(self._find(p, "add_to_path"))
    return ""

  def find_path(self, p) -> str:
    return self._find(p, "find_path", exists_only=True)[0]

  def find_paths(self, p) -> list:
    return self._find(p, "find_paths")

  def path_exists(self, p) -> bool:
    return bool(self._search(p, exists_only=True)[0])

  def include(self, p, keys: str = "") -> str:
    return self._include(p, keys, multi=False)

  def include_all(self, p, keys: str = "") -> str:
    return self._include(p, keys, multi=True)

  def include_text(self, p) -> str:
    where = self._call_site()
    pieces = []
    for found in self._find(p, "include_text"):
      self._check_depth("include_text", where)
      sub = self.session.read(found, where)
      self.session.files.append(found)
      if is_template(found, sub):
        done = render(found, sub, self.session, tuple(self.dirs),
                      self.depth + 1)
        self.included.update(done.included)
        sub, origins = done.text, done.origins
      else:
        origins = [(display(found), i + 1)
                   for i in range(sub.count("\n") + 1)]
      self.pasted.append(origins)
      pieces.append(f"{_BEGIN}{len(self.pasted) - 1}{_SEP}{sub}{_END}")
    return "\n".join(pieces)

  def functions(self) -> dict:
    return {"cwd": self.cwd, "add_to_path": self.add_to_path,
            "find_path": self.find_path, "find_paths": self.find_paths,
            "path_exists": self.path_exists, "include": self.include,
            "include_all": self.include_all,
            "include_text": self.include_text}

  # -- rendering ------------------------------------------------------------

  def run(self, text: str) -> Rendered:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(os.path.dirname(self.real)),
        undefined=jinja2.StrictUndefined)
    env.globals.update(self.functions())
    try:
      code = env.compile(text, name=os.path.basename(self.real),
                         filename=self.real)
      template = env.template_class.from_code(env, code,
                                              env.make_globals(None))
      out = template.render(self.session.variables)
    except (SpecError, UnsupportedFeatureError):
      raise
    except jinja2.TemplateSyntaxError as e:
      where = f"{display(e.filename or self.real)}:{e.lineno}"
      raise SpecError(
          f"template syntax error: {e.message}", path="template",
          where=where, hint="Check the {{ ... }} and {% ... %} tags on this "
          "line and the blocks they open ({% if %} ... {% endif %}).") \
          from None
    except jinja2.UndefinedError as e:
      raise self._undefined(e) from None
    except Exception as e:  # noqa: BLE001 - any failure inside the template
      raise SpecError(
          f"template error: {type(e).__name__}: {e}", path="template",
          where=self._error_site(e),
          hint="Check the expression on this line.") from None
    return self._place(out, text.split("\n"))

  def _undefined(self, e: Exception) -> Exception:
    where = self._error_site(e)
    m = _UNDEFINED.match(str(e))
    name = m.group(1) if m else ""
    if name in _LEFT_OUT:
      return UnsupportedFeatureError(_LEFT_OUT[name], path="template",
                                     where=where)
    if not m:
      return SpecError(f"template error: {e}", path="template", where=where,
                       hint="Check the names used on this line.")
    return SpecError(
        f"undefined template variable '{name}'", path="template",
        where=where,
        hint=f"Give it a value: `jaxloop model|map|ert FILE... --var "
        f"{name}=VALUE`, or in Python jaxloop.load(..., "
        f"variables={{'{name}': ...}}); or write "
        f"{{{{ {name} | default(...) }}}} in the template.")

  def _error_site(self, e: Exception) -> str:
    """``file:line`` of the innermost template frame of ``e``'s traceback
    (jinja2 rewrites tracebacks to point into the template)."""
    site = display(self.path)
    for frame in traceback.extract_tb(e.__traceback__):
      name = frame.filename
      if not name.endswith(".py") and not name.startswith("<"):
        site = f"{display(name)}:{frame.lineno}"
    return site

  def _call_site(self) -> str:
    """``file:line`` of the template line calling a function (the nearest
    frame of compiled template code on the stack)."""
    frame = sys._getframe(1)
    while frame is not None:
      template = frame.f_globals.get("__jinja_template__")
      if template is not None:
        line = template.get_corresponding_lineno(frame.f_lineno)
        return f"{display(template.filename or self.path)}:{line}"
      frame = frame.f_back
    return display(self.path)

  def _place(self, out: str, source: list) -> Rendered:
    """Strips the include_text markers; the origin of each line: the pasted
    file's line, or the template line it aligns with."""
    lines, origins = [], []
    piece: Optional[list] = None
    index = 0
    for line in out.split("\n"):
      m = _MARKER.match(line.lstrip(" \t"))
      if m and m.group(1) is not None:
        origins.append(self.pasted[int(m.group(1))][0])
      elif piece is not None:
        origins.append(piece[min(index, len(piece) - 1)])
      else:
        origins.append(None)
      for m in _MARKER.finditer(line):
        if m.group(1) is not None:
          piece, index = self.pasted[int(m.group(1))], 0
        else:
          piece = None
      index += 1
      lines.append(_MARKER.sub("", line))
    self._align(lines, origins, source)
    return Rendered("\n".join(lines), origins, self.included)

  def _align(self, lines: list, origins: list, source: list) -> None:
    """Origins of the template's own lines: aligned with the source."""
    plain = [i for i, o in enumerate(origins) if o is None]
    if not plain:
      return
    name = display(self.path)
    matcher = difflib.SequenceMatcher(None, source,
                                      [lines[i] for i in plain],
                                      autojunk=False)
    last = max(len(source) - 1, 0)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
      for j in range(j1, j2):
        src = i1 if tag == "insert" else min(i1 + j - j1, i2 - 1)
        origins[plain[j]] = (name, min(src, last) + 1)

  # -- includes ---------------------------------------------------------------

  def _include(self, p, keys: str, multi: bool) -> str:
    fn = "include_all" if multi else "include"
    where = self._call_site()
    found = self._find(p, fn)
    if not multi and len(found) > 1:
      raise SpecError(
          f"include('{p}') matches {len(found)} files: "
          f"{', '.join(display(f) for f in found)}", path="include",
          where=where, hint="Name one file, or use include_all() for a list "
          "of all of them.")
    self._check_depth(fn, where)
    values = []
    for f in found:
      self.session.files.append(f)
      data = self.session.load(f, self.session, tuple(self.dirs),
                               self.depth + 1, where)
      values.append(self._index(data, keys, f, fn, p, where))
    name = self.session.name()
    # As in Timeloop, include_all of one file gives that file's value.
    self.included[name] = Included(values, found, where, len(values) > 1)
    return f"!include_loaded {name}"

  @staticmethod
  def _index(data, keys: str, path: str, fn: str, p, where: str):
    """The value under dotted ``keys`` (as Timeloop indexes includes)."""
    for key in [k for k in str(keys or "").lstrip(".").split(".") if k]:
      if not isinstance(data, dict) or key not in data:
        there = (", ".join(str(k) for k in data) if isinstance(data, dict)
                 else f"a {type(data).__name__}, not a mapping")
        raise SpecError(
            f"{fn}('{p}', '{keys}'): no key '{key}' in {display(path)} "
            f"(found: {there or 'nothing'})", path=fn, where=where,
            hint="The second argument names the keys to take, dotted, e.g. "
            "'problem' or 'compound_components.classes'.")
      data = data[key]
    return data

  def _check_depth(self, fn: str, where: str) -> None:
    if self.depth + 1 > MAX_DEPTH:
      raise SpecError(
          f"expected {fn} to end within {MAX_DEPTH} levels, found deeper "
          "nesting (an include cycle?)", path=fn, where=where,
          hint="Check that no file includes itself, directly or through "
          "another file.")

  def _search(self, p, exists_only: bool = False) -> tuple[list, list]:
    """Timeloop's search: ``(matches, places looked)``; relative paths are
    tried against this file's folder, then each added folder."""
    if isinstance(p, (list, tuple)):
      found, looked = [], []
      for item in p:
        f, s = self._search(item, exists_only)
        found += f
        looked += s
      return _unique(found), looked
    p = str(p)
    bases = [""] if os.path.isabs(p) else [os.path.dirname(self.real),
                                           *self.dirs]
    found, looked = [], []
    for base in bases:
      pattern = os.path.abspath(os.path.realpath(os.path.join(base, p)))
      looked.append(pattern)
      if exists_only:
        if os.path.exists(pattern):
          return [pattern], looked
      else:
        found += sorted(glob.glob(pattern))
    return _unique(found), looked

  def _find(self, p, fn: str, exists_only: bool = False) -> list:
    found, looked = self._search(p, exists_only)
    if found:
      return found
    hint = ("Check the path (relative paths are taken from the current "
            "file's folder, then from the add_to_path() folders; or give an "
            "absolute path).")
    if isinstance(p, str) and os.path.exists(p):
      rel = os.path.relpath(os.path.abspath(p), self.cwd())
      hint += (f" '{p}' exists relative to the current directory: pass "
               f"{os.path.abspath(p)}, or {rel} (relative to "
               f"{display(self.cwd())}).")
    looked = list(dict.fromkeys(display(s) for s in looked))
    raise SpecError(
        f"file not found: '{p}' ({fn} looked for {', '.join(looked)})",
        where=self._call_site(), hint=hint)


def _unique(paths: list) -> list:
  out = []
  for p in paths:
    p = os.path.realpath(os.path.abspath(p))
    if p not in out:
      out.append(p)
  return out



def parse_variables(assignments) -> dict:
  """``["NAME=VALUE", ...]`` (the command line's ``--var``) as a dict of
  strings, as Timeloop's ``--jinja_parse_data`` reads them.

  Raises:
    SpecError: an assignment without ``=`` or a name, or a name given twice.
  """
  out: dict = {}
  for item in assignments or ():
    name, eq, value = str(item).partition("=")
    name = name.strip()
    if not eq or not name.isidentifier():
      raise SpecError(
          f"expected --var NAME=VALUE, found '{item}'", path="--var",
          hint="e.g. --var architecture=eyeriss_like (NAME a Python "
          "identifier; VALUE is passed to the templates as a string).")
    if name in out:
      raise SpecError(f"--var {name} given twice ('{out[name]}' and "
                      f"'{value}')", path="--var",
                      hint="Give each variable once.")
    out[name] = value
  return out
