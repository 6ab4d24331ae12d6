"""Helpers that build one precise :class:`SpecError` per malformed input.

A spec error names the file and line (taken from the YAML node, see
:mod:`jaxloop.spec.yamlio`), the key path, what was expected, what was found,
and a hint such as ``Did you mean 'M'?``.
"""
from __future__ import annotations

import difflib
from typing import Iterable, Optional

from jaxloop.errors import SpecError
from jaxloop.spec import yamlio


def suggest(name: object, choices: Iterable[str]) -> str:
  """A ``Did you mean ...?`` hint for a near miss, or ``""``.

  Args:
    name: the unknown name.
    choices: the valid names.

  Returns:
    The hint text (empty when nothing is close).
  """
  choices = [str(c) for c in choices]
  text = str(name)
  exact = [c for c in choices if c.lower() == text.lower()]
  close = exact or difflib.get_close_matches(text, choices, n=1, cutoff=0.6)
  if close:
    return f"Did you mean '{close[0]}'?"
  return ""


def describe(value: object) -> str:
  """Short human description of a found value, e.g. ``'abc' (a string)``."""
  kinds = {bool: "a boolean", int: "an integer", float: "a number",
           str: "a string", type(None): "nothing (null)"}
  if isinstance(value, dict):
    keys = ", ".join(str(k) for k in list(value)[:6])
    return f"a mapping with keys [{keys}]"
  if isinstance(value, list):
    return f"a list of {len(value)} item(s)"
  if value is None:
    return "nothing"
  kind = kinds.get(type(value), type(value).__name__)
  shown = repr(value)
  if len(shown) > 60:
    shown = shown[:57] + "..."
  return f"{shown} ({kind})"


def fail(message: str, *, path: str, node: object = None,
         key: Optional[object] = None, hint: str = "",
         where: str = "") -> SpecError:
  """Builds (does not raise) a SpecError located at ``node`` / ``node[key]``.

  Args:
    message: what was expected and what was found.
    path: key path, e.g. ``mapping[3].factors``.
    node: the YAML mapping or list the problem is in (for file:line).
    key: the key or index inside ``node`` (for a more precise line).
    hint: a suggestion.
    where: explicit ``file:line`` overriding the node's location.

  Returns:
    The error, for the caller to ``raise``.
  """
  if not where:
    where = yamlio.where(node, key)
  return SpecError(message, path=path, where=where, hint=hint)


def check_keys(node: dict, allowed: Iterable[str], *, path: str,
               what: str) -> None:
  """Rejects keys of ``node`` that are not in ``allowed``.

  Args:
    node: the mapping to check.
    allowed: valid keys.
    path: key path of ``node``.
    what: what the mapping is, for the message (``a mapping directive``).

  Raises:
    SpecError: naming the first unknown key, listing the allowed ones.
  """
  allowed = list(allowed)
  for key in node:
    if key not in allowed and not str(key).startswith("_"):
      hint = suggest(key, allowed)
      listing = "allowed keys: " + ", ".join(allowed)
      hint = f"{hint} ({listing})" if hint else listing.capitalize()
      raise fail(f"unknown key '{key}' in {what}", path=join(path, key),
                 node=node, key=key, hint=hint)


def require_mapping(value: object, *, path: str, parent: object = None,
                    key: object = None, what: str = "a mapping") -> dict:
  """Returns ``value`` if it is a dict, else raises a SpecError."""
  if not isinstance(value, dict):
    raise fail(f"expected {what}, found {describe(value)}", path=path,
               node=value if isinstance(value, (dict, list)) else parent,
               key=None if isinstance(value, (dict, list)) else key)
  return value


def require_list(value: object, *, path: str, parent: object = None,
                 key: object = None, what: str = "a list") -> list:
  """Returns ``value`` if it is a list, else raises a SpecError."""
  if not isinstance(value, list):
    raise fail(f"expected {what}, found {describe(value)}", path=path,
               node=value if isinstance(value, (dict, list)) else parent,
               key=None if isinstance(value, (dict, list)) else key)
  return value


def join(path: str, key: object) -> str:
  """Key path ``a.b`` + ``c`` -> ``a.b.c``; integers give ``a.b[3]``."""
  if isinstance(key, int):
    return f"{path}[{key}]"
  return f"{path}.{key}" if path else str(key)


def near_misses(given: Iterable[str], targets: Iterable[str],
                known: Iterable[str] = (),
                cutoff: float = 0.8) -> list[tuple[str, str]]:
  """Names in ``given`` that look like a misspelling of one of ``targets``.

  Case-sensitive (Timeloop's keys are; ``DATAWIDTH`` is a user's variable,
  not a misspelt ``datawidth``).  A name that is itself in ``targets`` or
  ``known``, or whose look-alike is also given, is no misspelling.

  Args:
    given: the names written.
    targets: the names that change a result when given.
    known: other valid names (read elsewhere, or by other tools).
    cutoff: similarity ratio (``difflib``) from which names look alike.

  Returns:
    ``[(name written, name meant), ...]`` in ``given`` order.
  """
  given = [str(g) for g in given]
  targets = [str(t) for t in targets]
  valid = set(targets) | {str(k) for k in known}
  out = []
  for name in given:
    if name in valid or name.startswith("_"):
      continue
    close = difflib.get_close_matches(name, targets, n=1, cutoff=cutoff)
    if close and close[0] not in given:
      out.append((name, close[0]))
  return out
