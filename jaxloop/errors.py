"""Errors raised for bad user input.

Every problem found in a spec is reported as one :class:`SpecError` that names
the file (and line, where YAML gives one), the key path, what was expected,
what was found, and a hint.  The CLI prints it as one paragraph and exits 2.

What jaxloop reads by taking a default or a guess (a misspelt attribute, a
class estimated without its definition, a table entry matched under another
name) is a :class:`SpecWarning`, which strict mode turns into a SpecError;
a mapping Timeloop would refuse is an :class:`InvalidMappingError`.
"""
from __future__ import annotations

import contextlib
import os
import re
import sys
import warnings


class _Located:
  """A finding about the input: message, key path, ``file:line``, hint;
  ``format()`` gives the text the exception or warning carries."""

  def __init__(self, message: str, *, path: str = "", where: str = "",
               hint: str = ""):
    self.message = message
    self.path = path
    self.where = where
    self.hint = hint
    super().__init__(self.format())

  def format(self) -> str:
    raise NotImplementedError


class SpecError(_Located, ValueError):
  """A spec file is malformed or inconsistent.

  Attributes:
    where: ``file:line`` or just ``file`` (may be empty for in-memory specs).
    path: key path inside the document, e.g. ``mapping[3].factors``.
    message: what was expected and what was found.
    hint: a suggestion (``Did you mean 'M'?``), or empty.
  """

  def format(self) -> str:
    head = self.path or "spec"
    if self.where:
      head += f" ({self.where})"
    text = f"{head}: {self.message}"
    if self.hint:
      text += f"\n  {self.hint}"
    return text


class UnsupportedFeatureError(NotImplementedError):
  """A Timeloop feature that jaxloop does not model (named in the message)."""

  def __init__(self, feature: str, *, path: str = "", where: str = ""):
    self.feature = feature
    self.path = path
    self.where = where
    loc = f"{path} ({where}): " if where else (f"{path}: " if path else "")
    super().__init__(f"{loc}unsupported Timeloop feature: {feature}")


class InvalidMappingError(SpecError):
  """A mapping the model evaluates but Timeloop refuses (``couldn't map
  level``): a tile that overflows a buffer, spatial factors beyond a
  fan-out, factors that do not multiply to the bounds.

  Attributes:
    violations: one line per violation (:func:`jaxloop.validity.violations`).
  """

  def __init__(self, violations, *, where: str = "", hint: str = ""):
    self.violations = tuple(violations)
    n = len(self.violations)
    head = ("the mapping is invalid" if n == 1 else
            f"the mapping is invalid ({n} violations)")
    body = self.violations[0] if n == 1 else "".join(
        f"\n    {v}" for v in self.violations)
    super().__init__(f"{head}: {body}" if n == 1 else head + ":" + body,
                     path="mapping", where=where, hint=hint)


class SpecWarning(_Located, UserWarning):
  """Input jaxloop read by taking a default or a guess: an ignored or
  misspelt attribute, a compound class estimated without its definition,
  an ERT entry matched under another name, a key matched case-insensitively.

  The library never prints: it issues these as Python warnings (the command
  line prints each as one ``jaxloop: warning:`` line).  ``strict=True`` in
  :func:`jaxloop.load` and ``jaxloop --strict`` raise them as
  :class:`SpecError` instead (:meth:`as_error`).

  Attributes:
    message, path, where, hint: as in :class:`SpecError`.
  """

  def format(self) -> str:
    """One line: ``path (where): message; hint``."""
    head = self.path
    if self.where:
      head = f"{head} ({self.where})" if head else self.where
    text = f"{head}: {self.message}" if head else self.message
    if self.hint:
      text += f"; {self.hint}"
    return " ".join(text.split("\n"))

  def as_error(self) -> SpecError:
    """The same finding as a :class:`SpecError` (strict mode)."""
    hint = (self.hint + "\n  " if self.hint else "") + (
        "(a warning, made an error by strict mode: jaxloop --strict / "
        "load(..., strict=True))")
    return SpecError(self.message, path=self.path or "spec",
                     where=self.where, hint=hint)

  @classmethod
  def of(cls, warning: Warning) -> "SpecWarning":
    """``warning`` as a SpecWarning; the readers' plain ``UserWarning``
    texts (``file:line: key.path: message``) are split into their parts."""
    if isinstance(warning, SpecWarning):
      return warning
    text = str(warning)
    m = _WARNING_TEXT.match(text)
    if not m:
      return cls(text)
    return cls(m.group("message"), path=m.group("path") or "",
               where=m.group("where"))


_WARNING_TEXT = re.compile(
    r"^(?P<where>[^\s:][^:]*:\d+): (?:(?P<path>[A-Za-z_][\w.\[\]-]*): )?"
    r"(?P<message>.*)$", re.S)
_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


def warn(message: str, *, path: str = "", where: str = "", hint: str = "",
         stacklevel: int = 2) -> None:
  """Issues a :class:`SpecWarning` (a default or guess taken for the
  input)."""
  warnings.warn(SpecWarning(message, path=path, where=where, hint=hint),
                stacklevel=stacklevel + 1)


def is_spec_warning(w: warnings.WarningMessage) -> bool:
  """Whether a recorded warning is one of jaxloop's findings about its
  input: a SpecWarning, or a plain UserWarning issued inside jaxloop."""
  if issubclass(w.category, SpecWarning):
    return True
  return w.category is UserWarning and os.path.abspath(
      str(w.filename)).startswith(_PACKAGE_DIR + os.sep)


@contextlib.contextmanager
def spec_warnings(strict: bool = False):
  """Collects the input warnings issued in the block and issues each once
  as a :class:`SpecWarning` (other warnings pass through unchanged), also
  before an error the block raises.

  Args:
    strict: raise the first of them as a :class:`SpecError` instead (an
      error the block raised takes precedence).
  """
  caught: list = []
  try:
    with warnings.catch_warnings(record=True) as caught:
      warnings.simplefilter("always")
      yield
  except BaseException:
    _issue(caught, strict=False, quiet=True)
    raise
  _issue(caught, strict)


def _issue(caught: list, strict: bool, quiet: bool = False) -> None:
  """Issues the recorded warnings again: the input ones once each, as
  SpecWarnings (raised as a SpecError when ``strict``); with ``quiet``,
  filters that make warnings errors drop them (an error is on its way)."""
  found: dict[str, SpecWarning] = {}
  for w in caught:
    if is_spec_warning(w):
      sw = SpecWarning.of(w.message)
      found.setdefault(sw.format(), sw)
    else:
      with contextlib.suppress(Warning) if quiet else contextlib.nullcontext():
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno,
                               source=w.source)
  if strict and found:
    raise next(iter(found.values())).as_error()
  level = _caller_level()
  for sw in found.values():
    with contextlib.suppress(Warning) if quiet else contextlib.nullcontext():
      warnings.warn(sw, stacklevel=level)


def _caller_level() -> int:
  """The ``stacklevel``, for a warning issued by the caller of this
  function, of the first frame outside jaxloop (and contextlib): the user's
  call the warning is about."""
  frame, level = sys._getframe(1), 1
  while frame is not None and (
      frame.f_code.co_filename.startswith(_PACKAGE_DIR + os.sep)
      or frame.f_code.co_filename == contextlib.__file__):
    frame, level = frame.f_back, level + 1
  return level
