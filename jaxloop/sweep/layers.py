"""The layers a sweep maps on every point: problem files (files, folders,
globs), identical problems merged with a repeat count."""
from __future__ import annotations

import dataclasses
import glob
import os
from pathlib import Path
from typing import Optional, Sequence

from jaxloop.errors import SpecError


@dataclasses.dataclass(frozen=True)
class Layer:
  """A distinct layer: ``name`` (file stem, or the folder and stem),
  ``path`` (its problem file), ``repeat`` (identical layers merged)."""
  name: str
  path: Optional[str]
  repeat: int = 1


def expand_layers(paths: Sequence[str]) -> list[str]:
  """Problem files named by ``paths`` (a file, a folder's ``*.yaml``, or a
  glob), in order, each once.

  Raises:
    SpecError: a path that names no file.
  """
  out: list[str] = []
  for p in paths:
    p = os.fspath(p)
    if os.path.isdir(p):
      found = sorted(glob.glob(os.path.join(p, "*.yaml")))
    elif any(c in p for c in "*?["):
      found = sorted(glob.glob(p))
    else:
      found = [p] if os.path.isfile(p) else []
    if not found:
      raise SpecError(f"no problem file at '{p}'", path="--layers",
                      hint="Give problem files, a folder of them or a glob "
                      "such as layer_shapes/resnet18/*.yaml.")
    out += [f for f in found if f not in out]
  return out


def layer_name(path: str, all_paths: Sequence[str]) -> str:
  """The file stem, prefixed with its folder when stems repeat."""
  p = Path(path)
  stems = [Path(q).stem for q in all_paths]
  return p.stem if stems.count(p.stem) == 1 else f"{p.parent.name}/{p.stem}"


def merge_identical(paths: Sequence[str], problems: Sequence) -> list[Layer]:
  """One :class:`Layer` per distinct problem (``problems[i]`` is the
  loaded problem of ``paths[i]``, compared without its source), first
  occurrence first, with its repeat count."""
  seen: dict = {}
  for path, prob in zip(paths, problems):
    key = dataclasses.replace(prob, source="", name="")
    if key in seen:
      seen[key] = dataclasses.replace(seen[key], repeat=seen[key].repeat + 1)
    else:
      seen[key] = Layer(layer_name(path, paths), path)
  return list(seen.values())


def load_problem(path: str):
  """The :class:`~jaxloop.spec.types.Problem` of one problem file
  (templates rendered)."""
  from jaxloop.spec import yamlio
  from jaxloop.spec.problem import parse_problem
  doc = yamlio.load_yaml_file(path, session=yamlio.new_session({}))
  if not isinstance(doc, dict) or "problem" not in doc:
    raise SpecError(f"no 'problem:' section in {path}", path="problem",
                    where=path, hint="--layers takes Timeloop problem files.")
  return parse_problem(doc["problem"], "problem")


def network_layers(paths: Sequence[str]) -> list[Layer]:
  """The distinct layers of the problem files named by ``paths`` (see
  :func:`expand_layers`), with repeat counts."""
  files = expand_layers(paths)
  return merge_identical(files, [load_problem(f) for f in files])
