"""A network: an ordered list of layers, each a Timeloop problem.

``--layers`` paths (:func:`load_layers`) may be

* a Timeloop problem file (plain YAML or a template such as Timeloop's
  ``layer_shapes/resnet18/03.yaml``);
* a folder (its ``*.yaml`` files, sorted) or a glob (``resnet18/*.yaml``);
* a network file: YAML with a top-level ``network:`` key::

      network:
        name: tiny                 # optional
        layers:
        - file: ../layer_shapes/resnet18/03.yaml   # relative to this file
          name: conv3x3            # optional (default: the file's stem)
          repeat: 4                # optional, a positive integer (default 1)
        - file: ../layer_shapes/resnet18/12.yaml

* an ONNX model (``*.onnx``, needs the ``onnx`` package: ``pip install
  jaxloop[onnx]``): its Conv (grouped and depthwise included), Gemm and
  MatMul nodes (:mod:`jaxloop.network.onnx_layers`).
"""
from __future__ import annotations

import dataclasses
import glob
import os
from pathlib import Path
from typing import Optional, Sequence

import yaml

from jaxloop.errors import SpecError


@dataclasses.dataclass(frozen=True)
class Layer:
  """One layer of a network.

  Attributes:
    name: unique within the network (output folder ``layers/<name>``).
    path: its Timeloop problem file, or None when ``problem`` is given.
    problem: the ``problem:`` section itself (a dict; ONNX layers), or None.
    repeat: how many times the network runs this layer (>= 1).
  """
  name: str
  path: Optional[str] = None
  problem: Optional[dict] = dataclasses.field(default=None, compare=False)
  repeat: int = 1

  @property
  def source(self) -> str:
    """Where the layer comes from (for messages)."""
    return self.path or f"layer '{self.name}'"


def load_layers(paths: Sequence[str | os.PathLike]) -> list[Layer]:
  """The layers of ``paths`` in order (see the module docstring), with
  unique names.

  Raises:
    SpecError: a path that does not exist or matches nothing, a network
      file with a bad entry, an ONNX model jaxloop cannot read.
  """
  if not paths:
    raise SpecError("no layers given", path="--layers",
                    hint="Pass problem files, a folder, a glob, a network "
                    "YAML or an ONNX model.")
  layers: list[Layer] = []
  for p in paths:
    layers += _layers_of(os.fspath(p))
  return unique_names(layers)


def _layers_of(path: str) -> list[Layer]:
  """The layers one ``--layers`` argument names."""
  if any(ch in path for ch in "*?[") and not os.path.exists(path):
    found = sorted(glob.glob(path))
    if not found:
      raise SpecError(f"no file matches '{path}'", path="--layers",
                      where=path, hint="Check the pattern (quote it so the "
                      "shell does not expand it differently).")
    return [x for f in found for x in _layers_of(f)]
  p = Path(path)
  if p.is_dir():
    found = sorted(p.glob("*.yaml")) + sorted(p.glob("*.yml"))
    if not found:
      raise SpecError(f"folder '{path}' holds no *.yaml problem files",
                      path="--layers", where=path,
                      hint="Pass the folder of a network's layer files.")
    return [Layer(name=f.stem, path=str(f)) for f in found]
  if not p.is_file():
    raise SpecError(f"layer file '{path}' does not exist", path="--layers",
                    where=path, hint="Check the path (relative paths are "
                    "taken from the current folder).")
  if p.suffix.lower() == ".onnx":
    from jaxloop.network.onnx_layers import layers_from_onnx
    return layers_from_onnx(path)
  network = _network_section(p)
  if network is not None:
    return _network_layers(p, network)
  return [Layer(name=p.stem, path=str(p))]


def _network_section(path: Path) -> Optional[object]:
  """The ``network:`` section of ``path``, or None for a problem file
  (templates and files without that key)."""
  text = path.read_text()
  if "{{" in text or "{%" in text or "network" not in text:
    return None
  try:
    doc = yaml.safe_load(text)
  except yaml.YAMLError:
    return None
  if isinstance(doc, dict) and "network" in doc:
    return doc["network"]
  return None


def _network_layers(path: Path, network) -> list[Layer]:
  """The layers a network file lists, files relative to it."""
  where = str(path)
  entries = network.get("layers") if isinstance(network, dict) else None
  if not isinstance(entries, list) or not entries:
    raise SpecError("the network has no list of layers",
                    path="network.layers", where=where,
                    hint="network: {layers: [{file: conv1.yaml, repeat: "
                    "1}, ...]}")
  out = []
  for i, entry in enumerate(entries):
    key = f"network.layers[{i}]"
    if isinstance(entry, str):
      entry = {"file": entry}
    if not isinstance(entry, dict) or "file" not in entry:
      raise SpecError("a layer entry needs 'file:'", path=key, where=where,
                      hint="- {file: conv1.yaml, repeat: 2}")
    unknown = sorted(set(entry) - {"file", "name", "repeat"})
    if unknown:
      raise SpecError(f"unknown key '{unknown[0]}' in a layer entry",
                      path=f"{key}.{unknown[0]}", where=where,
                      hint="A layer entry has file, name and repeat.")
    repeat = entry.get("repeat", 1)
    if isinstance(repeat, bool) or not isinstance(repeat, int) or repeat < 1:
      raise SpecError(f"repeat must be a positive integer, not {repeat!r}",
                      path=f"{key}.repeat", where=where,
                      hint="How many times the network runs this layer, "
                      "e.g. repeat: 2.")
    file = str(entry["file"])
    target = file if os.path.isabs(file) else str(path.parent / file)
    try:
      found = _layers_of(target)
    except SpecError as e:
      raise SpecError(e.message, path=f"{key}.file", where=where,
                      hint=e.hint) from None
    for layer in found:
      name = str(entry["name"]) if "name" in entry and len(found) == 1 \
          else layer.name
      out.append(dataclasses.replace(layer, name=name,
                                     repeat=layer.repeat * repeat))
  return out


def unique_names(layers: list[Layer]) -> list[Layer]:
  """Names made unique (and safe as folder names): a repeated name gets
  ``-2``, ``-3``... in order."""
  seen: dict[str, int] = {}
  out = []
  for layer in layers:
    base = "".join(c if c.isalnum() or c in "-_." else "_"
                   for c in layer.name) or "layer"
    n = seen.get(base, 0) + 1
    seen[base] = n
    name = base if n == 1 else f"{base}-{n}"
    out.append(dataclasses.replace(layer, name=name))
  return out
