"""Errors raised for bad user input.

Every problem found in a spec is reported as one :class:`SpecError` that names
the file (and line, where YAML gives one), the key path, what was expected,
what was found, and a hint.  The CLI prints it as one paragraph and exits 2.
"""
from __future__ import annotations


class SpecError(ValueError):
  """A spec file is malformed or inconsistent.

  Attributes:
    where: ``file:line`` or just ``file`` (may be empty for in-memory specs).
    path: key path inside the document, e.g. ``mapping[3].factors``.
    message: what was expected and what was found.
    hint: a suggestion (``Did you mean 'M'?``), or empty.
  """

  def __init__(self, message: str, *, path: str = "", where: str = "",
               hint: str = ""):
    self.message = message
    self.path = path
    self.where = where
    self.hint = hint
    super().__init__(self.format())

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
