"""Accelergy attribute expressions (``max(1, ceil(log2(depth)))``,
``width / memory_width``, ``a if c else b``), evaluated with jax.numpy so
that traced sizes stay differentiable.  A safe AST walker, no ``eval``.
"""
from __future__ import annotations

import ast
import functools
import operator

import jax.numpy as jnp


def _reduce(fn):
  def call(*args):
    if len(args) == 1 and isinstance(args[0], (list, tuple)):
      args = tuple(args[0])
    return functools.reduce(fn, args)
  return call


FUNCTIONS = {
    "max": _reduce(jnp.maximum), "min": _reduce(jnp.minimum),
    "ceil": jnp.ceil, "floor": jnp.floor, "round": jnp.round,
    "log2": jnp.log2, "log10": jnp.log10, "log": jnp.log, "sqrt": jnp.sqrt,
    "exp": jnp.exp, "abs": jnp.abs, "int": jnp.floor, "float": lambda x: x,
}
_BINOPS = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
    ast.Div: operator.truediv, ast.Pow: operator.pow,
    ast.FloorDiv: lambda a, b: jnp.floor(a / b), ast.Mod: operator.mod,
}
_CMPOPS = {
    ast.Lt: operator.lt, ast.LtE: operator.le, ast.Gt: operator.gt,
    ast.GtE: operator.ge, ast.Eq: operator.eq, ast.NotEq: operator.ne,
}


class ExpressionError(ValueError):
  """An expression that cannot be evaluated (names the reason)."""


def evaluate(text: str, names: dict):
  """Value of expression ``text`` with variables ``names``.

  Raises:
    ExpressionError: syntax error, unknown name or unsupported construct.
  """
  try:
    tree = ast.parse(str(text).strip(), mode="eval")
  except SyntaxError as e:
    raise ExpressionError(f"not an expression: {text!r}") from e
  return _eval(tree.body, names)


def _eval(node, names):
  if isinstance(node, ast.Constant):
    if isinstance(node.value, (int, float, bool)):
      return node.value
    raise ExpressionError(f"unsupported constant {node.value!r}")
  if isinstance(node, ast.Name):
    if node.id in names:
      v = names[node.id]
      if isinstance(v, str):
        raise ExpressionError(f"'{node.id}' is not a number ({v!r})")
      return v
    if node.id in ("True", "False"):
      return node.id == "True"
    raise ExpressionError(f"unknown name '{node.id}'")
  if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
    return _BINOPS[type(node.op)](_eval(node.left, names),
                                  _eval(node.right, names))
  if isinstance(node, ast.UnaryOp):
    v = _eval(node.operand, names)
    if isinstance(node.op, ast.USub):
      return -v
    if isinstance(node.op, ast.UAdd):
      return v
    if isinstance(node.op, ast.Not):
      return jnp.logical_not(v)
  if isinstance(node, ast.Compare) and len(node.ops) == 1 \
      and type(node.ops[0]) in _CMPOPS:
    return _CMPOPS[type(node.ops[0])](_eval(node.left, names),
                                      _eval(node.comparators[0], names))
  if isinstance(node, ast.BoolOp):
    vals = [_eval(v, names) for v in node.values]
    fn = jnp.logical_and if isinstance(node.op, ast.And) else jnp.logical_or
    return functools.reduce(fn, vals)
  if isinstance(node, ast.IfExp):
    return jnp.where(_eval(node.test, names), _eval(node.body, names),
                     _eval(node.orelse, names))
  if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) \
      and node.func.id in FUNCTIONS and not node.keywords:
    return FUNCTIONS[node.func.id](*[_eval(a, names) for a in node.args])
  raise ExpressionError(f"unsupported expression {ast.dump(node)[:60]}")
