"""ONNX models as networks of Timeloop problems (needs the ``onnx`` package).

Every Conv (grouped and depthwise included), Gemm and MatMul node becomes
one layer in the conv problem of Timeloop's ``layer_shapes/problem_base.
yaml`` (dims ``C M R S N P Q G``, strides and dilations as coefficients):

* Conv with input ``[N, Cin, H, W]``, weights ``[Cout, Cin/G, R, S]``,
  output ``[N, Cout, P, Q]`` and ``group`` G: ``C = Cin/G``, ``M =
  Cout/G``, ``G`` (depthwise: ``C = 1``);
* Gemm ``[rows, K] x [K, cols]`` (``transA``/``transB`` honoured) and
  MatMul ``[..., rows, K] x [..., K, cols]``: ``C = K``, ``M = cols``,
  ``P = rows``, and a MatMul's leading (batch) dims multiplied into ``N``.

Shapes come from ``onnx.shape_inference``; a node whose shapes stay
unknown is an error naming it.  Other nodes (activations, pooling, adds)
do no MACs in Timeloop's sense and are skipped.
"""
from __future__ import annotations

import math
from typing import Optional

from jaxloop.errors import SpecError
from jaxloop.network.layers import Layer

# The conv problem's shape (Timeloop's layer_shapes/problem_base.yaml).
_DIMS = ("C", "M", "R", "S", "N", "P", "Q", "G")
_SHAPE = {
    "coefficients": [{"name": n, "default": 1} for n in
                     ("Wstride", "Hstride", "Wdilation", "Hdilation")],
    "data_spaces": [
        {"name": "Weights",
         "projection": [[["C"]], [["M"]], [["R"]], [["S"]], [["G"]]]},
        {"name": "Inputs",
         "projection": [[["N"]], [["C"]], [["R", "Wdilation"], ["P",
                                                               "Wstride"]],
                        [["S", "Hdilation"], ["Q", "Hstride"]], [["G"]]]},
        {"name": "Outputs",
         "projection": [[["N"]], [["M"]], [["Q"]], [["P"]], [["G"]]],
         "read_write": True},
    ],
    "dimensions": list(_DIMS),
}


def problem(**instance) -> dict:
  """A conv problem section with ``instance`` (missing dims and
  coefficients are 1)."""
  full = {d: 1 for d in _DIMS}
  full.update({c: 1 for c in ("Wstride", "Hstride", "Wdilation",
                              "Hdilation")})
  full.update({k: int(v) for k, v in instance.items()})
  return {"version": 0.4, "instance": full, "shape": _SHAPE}


def layers_from_onnx(path: str) -> list[Layer]:
  """The Conv, Gemm and MatMul layers of the ONNX model at ``path``.

  Raises:
    SpecError: ``onnx`` not installed, an unreadable model, a node whose
      shapes are unknown, or a model without such nodes.
  """
  try:
    import onnx
  except ImportError:
    raise SpecError("reading ONNX models needs the 'onnx' package",
                    path="--layers", where=path,
                    hint="pip install 'jaxloop[onnx]'") from None
  try:
    model = onnx.shape_inference.infer_shapes(onnx.load(path))
  except Exception as e:   # onnx raises several unrelated types
    raise SpecError(f"cannot read the ONNX model: {e}", path="--layers",
                    where=path, hint="Check the file is an ONNX model."
                    ) from None
  shapes = _known_shapes(model)
  out = []
  for i, node in enumerate(model.graph.node):
    make = _MAKERS.get(node.op_type)
    if make is None:
      continue
    name = node.name or f"{node.op_type.lower()}{i}"
    inst = make(node, shapes, _attributes(node), f"{path}: node '{name}'")
    out.append(Layer(name=name, problem=problem(**inst)))
  if not out:
    raise SpecError("the ONNX model has no Conv, Gemm or MatMul node",
                    path="--layers", where=path,
                    hint="Only these nodes do MACs Timeloop models.")
  return out


def _known_shapes(model) -> dict[str, tuple]:
  """``{tensor name: shape}`` for every tensor whose dims are all known
  (inputs, outputs, inferred values, initializers)."""
  shapes = {}
  graph = model.graph
  for v in list(graph.input) + list(graph.output) + list(graph.value_info):
    dims = v.type.tensor_type.shape.dim
    if dims and all(d.HasField("dim_value") for d in dims):
      shapes[v.name] = tuple(int(d.dim_value) for d in dims)
  for t in graph.initializer:
    shapes[t.name] = tuple(int(d) for d in t.dims)
  return shapes


def _attributes(node) -> dict:
  import onnx
  return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _shape(shapes: dict, tensor: str, where: str, rank: Optional[int] = None):
  if tensor not in shapes or (rank is not None
                              and len(shapes[tensor]) != rank):
    raise SpecError(f"the shape of '{tensor}' is unknown"
                    + (f" or not of rank {rank}" if rank else ""),
                    path="--layers", where=where,
                    hint="Give the model's inputs fixed shapes (no symbolic "
                    "batch size) so that shape inference finds them.")
  return shapes[tensor]


def _conv(node, shapes, attrs, where) -> dict:
  """A 2-D Conv node's problem instance."""
  n, cin, _, _ = _shape(shapes, node.input[0], where, 4)
  cout, cin_g, r, s = _shape(shapes, node.input[1], where, 4)
  _, _, p, q = _shape(shapes, node.output[0], where, 4)
  g = int(attrs.get("group", 1))
  strides = list(attrs.get("strides", [1, 1]))
  dil = list(attrs.get("dilations", [1, 1]))
  if cin != cin_g * g or cout % g:
    raise SpecError(f"channels {cin}->{cout} do not split into {g} groups",
                    path="--layers", where=where, hint="Check the model.")
  return dict(N=n, C=cin_g, M=cout // g, G=g, R=r, S=s, P=p, Q=q,
              Hstride=strides[0], Wstride=strides[1], Hdilation=dil[0],
              Wdilation=dil[1])


def _gemm(node, shapes, attrs, where) -> dict:
  """A Gemm node's instance: ``[rows, K] x [K, cols]``."""
  a = _shape(shapes, node.input[0], where, 2)
  b = _shape(shapes, node.input[1], where, 2)
  rows, k = a[::-1] if attrs.get("transA", 0) else a
  k2, cols = b[::-1] if attrs.get("transB", 0) else b
  if k != k2:
    raise SpecError(f"Gemm inner sizes differ ({k} and {k2})",
                    path="--layers", where=where, hint="Check the model.")
  return dict(C=k, M=cols, P=rows)


def _matmul(node, shapes, attrs, where) -> dict:
  """A MatMul node's instance: batch dims into N."""
  del attrs
  a = _shape(shapes, node.input[0], where)
  b = _shape(shapes, node.input[1], where)
  out = _shape(shapes, node.output[0], where)
  k = a[-1]
  rows = a[-2] if len(a) > 1 else 1
  cols = b[-1] if len(b) > 1 else 1
  batch = math.prod(out[:-2]) if len(out) > 2 else 1
  return dict(N=batch, C=k, M=cols, P=rows)


_MAKERS = {"Conv": _conv, "Gemm": _gemm, "MatMul": _matmul}
