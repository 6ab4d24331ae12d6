"""Safe evaluation of the arithmetic expressions found in v0.4 attributes.

Timeloop's front end lets attributes be Python expressions over variables
(``depth: 2**14``, ``width: max(INPUT_WEIGHT_DATAWIDTH, 16)``,
``width: datawidth * 3``).  This module evaluates the arithmetic subset with
:mod:`ast` (numbers, names from a context, ``+ - * / // % **``, comparisons,
``x if c else y`` and a few math functions); anything else is left to the
caller to report.
"""
from __future__ import annotations

import ast
import math
import operator
import types
from typing import Callable, Mapping

_BINOPS: dict[type, Callable] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
    ast.Div: operator.truediv, ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod, ast.Pow: operator.pow,
}
_UNOPS: dict[type, Callable] = {
    ast.UAdd: operator.pos, ast.USub: operator.neg, ast.Not: operator.not_,
}
_CMPOPS: dict[type, Callable] = {
    ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt,
    ast.LtE: operator.le, ast.Gt: operator.gt, ast.GtE: operator.ge,
}
FUNCTIONS: dict[str, Callable] = {
    "max": max, "min": min, "abs": abs, "round": round, "int": int,
    "float": float, "ceil": math.ceil, "floor": math.floor,
    "log2": math.log2, "log10": math.log10, "log": math.log,
    "sqrt": math.sqrt, "len": len,
}
_CONSTANTS = {"True": True, "False": False, "None": None, "inf": math.inf}
_MAX_POW = 4096


class ExprError(ValueError):
  """The expression is not simple arithmetic, or names an unknown variable.

  Attributes:
    unknown: the unknown name, when that is the cause.
  """

  def __init__(self, message: str, unknown: str = ""):
    super().__init__(message)
    self.unknown = unknown


def evaluate(text: str, names: Mapping[str, object]) -> object:
  """Evaluates ``text`` with variables ``names``.

  Args:
    text: the expression, e.g. ``"max(W, 16) * 2"``.
    names: variable values (numbers, or nested expression strings that the
      caller has already resolved).

  Returns:
    The value (int, float or bool).

  Raises:
    ExprError: syntax error, unsupported construct, or unknown name.
  """
  try:
    tree = ast.parse(text.strip(), mode="eval")
  except SyntaxError:
    raise ExprError(f"not an arithmetic expression: {text!r}") from None
  return _eval(tree.body, names)


def _eval(node: ast.AST, names: Mapping[str, object]) -> object:
  if isinstance(node, ast.Constant):
    if isinstance(node.value, (int, float, bool)):
      return node.value
    raise ExprError(f"unsupported constant {node.value!r}")
  if isinstance(node, ast.Name):
    if node.id in names:
      return names[node.id]
    if node.id in _CONSTANTS:
      return _CONSTANTS[node.id]
    raise ExprError(f"unknown variable '{node.id}'", unknown=node.id)
  if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
    left, right = _eval(node.left, names), _eval(node.right, names)
    if isinstance(node.op, ast.Pow) and abs(right) > _MAX_POW:
      raise ExprError("exponent too large")
    try:
      return _BINOPS[type(node.op)](left, right)
    except (ArithmeticError, TypeError) as e:
      raise ExprError(str(e)) from None
  if isinstance(node, ast.UnaryOp) and type(node.op) in _UNOPS:
    return _UNOPS[type(node.op)](_eval(node.operand, names))
  if isinstance(node, ast.Compare) and all(type(o) in _CMPOPS
                                           for o in node.ops):
    left = _eval(node.left, names)
    for op, comp in zip(node.ops, node.comparators):
      right = _eval(comp, names)
      if not _CMPOPS[type(op)](left, right):
        return False
      left = right
    return True
  if isinstance(node, ast.BoolOp):
    values = [_eval(v, names) for v in node.values]
    if isinstance(node.op, ast.And):
      return all(values)
    return any(values)
  if isinstance(node, ast.IfExp):
    if _eval(node.test, names):
      return _eval(node.body, names)
    return _eval(node.orelse, names)
  if isinstance(node, ast.Attribute):
    # Only the read-only namespaces a caller passes (e.g. ``spec.problem``).
    base = _eval(node.value, names)
    if isinstance(base, types.SimpleNamespace) and hasattr(base, node.attr):
      return getattr(base, node.attr)
    raise ExprError(f"unknown attribute '{ast.unparse(node)}'")
  if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
      and node.func.id in FUNCTIONS and not node.keywords):
    args = [_eval(a, names) for a in node.args]
    try:
      return FUNCTIONS[node.func.id](*args)
    except (ArithmeticError, TypeError, ValueError) as e:
      raise ExprError(f"{node.func.id}(): {e}") from None
  raise ExprError(f"unsupported expression syntax '{ast.unparse(node)}'")


def resolve_all(raw: Mapping[str, object],
                outer: Mapping[str, object]) -> tuple[dict, dict]:
  """Evaluates string values of ``raw`` that are arithmetic expressions.

  Values may refer to ``outer`` names and to each other (in any order).
  Strings that are not expressions (``"LPDDR4"``, ``"45nm"``) stay strings.

  Args:
    raw: attribute name -> value as read.
    outer: variables visible from outside (inherited attributes, globals).

  Returns:
    ``(values, failures)``: resolved values, and for each string that looked
    like an expression but could not be evaluated, its ExprError.
  """
  values = dict(raw)
  failures: dict[str, ExprError] = {}
  pending = [k for k, v in raw.items() if isinstance(v, str)]
  for _ in range(len(pending) + 1):
    scope = dict(outer)
    scope.update({k: v for k, v in values.items() if k not in pending})
    still = []
    for key in pending:
      try:
        values[key] = evaluate(raw[key], scope)
        failures.pop(key, None)
      except ExprError as e:
        failures[key] = e
        still.append(key)
    if len(still) == len(pending):
      break
    pending = still
  return values, failures
