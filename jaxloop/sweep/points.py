"""Sweep axes and the points drawn from them (grid, random, Latin hypercube).

An axis is a name and either a list of values (``--grid NAME=v1,v2,...``)
or a continuous range (``--range NAME=LO:HI`` or ``LO:HI:log``).  Names:

* ``NAME`` (no dot): a template variable (``--var``; Jinja files such as
  ``top.yaml.jinja2``, e.g. ``architecture``);
* ``variables.NAME``: an entry of the spec's ``variables:`` section;
* ``COMPONENT.ATTRIBUTE``: an attribute of an architecture component or
  container (``shared_glb.depth``, ``PE_column.meshX``, ``eyeriss.technology``).

A point is a dict ``{name: value}``; its ``id`` is its position in the
sweep.
"""
from __future__ import annotations

import dataclasses
import itertools
import math
from typing import Optional, Sequence, Union

import numpy as np

from jaxloop.errors import SpecError

Value = Union[int, float, str]


@dataclasses.dataclass(frozen=True)
class Axis:
  """One swept variable.

  Attributes:
    name: see the module docstring.
    values: the discrete values (grid / choice axes), or ().
    low, high: a continuous range (random / LHS only); ``log``: sampled
      uniformly in log space; ``integer``: rounded to integers (both bounds
      written as integers).
  """
  name: str
  values: tuple = ()
  low: Optional[float] = None
  high: Optional[float] = None
  log: bool = False
  integer: bool = False

  @property
  def is_range(self) -> bool:
    return self.low is not None

  def at(self, u: float) -> Value:
    """The value at quantile ``u`` in [0, 1)."""
    if not self.is_range:
      return self.values[min(int(u * len(self.values)), len(self.values) - 1)]
    if self.log:
      x = math.exp(math.log(self.low) + u * (math.log(self.high)
                                             - math.log(self.low)))
    else:
      x = self.low + u * (self.high - self.low)
    return int(round(x)) if self.integer else float(x)


def parse_value(text: str) -> Value:
  """``"16"`` -> 16, ``"1e-9"`` -> 1e-9, anything else stays a string."""
  text = text.strip()
  for cast in (int, float):
    try:
      return cast(text)
    except ValueError:
      pass
  return text


def _split(spec: str, option: str) -> tuple[str, str]:
  name, sep, rest = spec.partition("=")
  if not sep or not name.strip() or not rest.strip():
    raise SpecError(f"{option} {spec!r}: expected NAME=VALUES", path=option,
                    hint=f"e.g. {option} shared_glb.depth=4096,8192,16384"
                    if option == "--grid" else
                    f"e.g. {option} shared_glb.depth=1024:65536:log")
  return name.strip(), rest.strip()


def parse_grid(spec: str) -> Axis:
  """``NAME=v1,v2,...`` -> a discrete :class:`Axis`.

  Raises:
    SpecError: no ``=``, an empty name or an empty value.
  """
  name, rest = _split(spec, "--grid")
  parts = [p.strip() for p in rest.split(",")]
  if any(not p for p in parts):
    raise SpecError(f"--grid {spec!r}: empty value in the list", path="--grid",
                    hint="Separate values with single commas: NAME=1,2,4")
  return Axis(name=name, values=tuple(parse_value(p) for p in parts))


def parse_range(spec: str) -> Axis:
  """``NAME=LO:HI[:log]`` -> a continuous :class:`Axis` (integers when both
  bounds are written as integers).

  Raises:
    SpecError: malformed bounds, ``LO >= HI``, or ``log`` with ``LO <= 0``.
  """
  name, rest = _split(spec, "--range")
  parts = rest.split(":")
  log = len(parts) == 3 and parts[2].strip() == "log"
  bounds = [parse_value(p) for p in parts[:2]]
  ok = (len(parts) in (2, 3) and (len(parts) == 2 or log)
        and all(isinstance(b, (int, float)) for b in bounds))
  if not ok or bounds[0] >= bounds[1] or (log and bounds[0] <= 0):
    raise SpecError(f"--range {spec!r}: expected NAME=LO:HI or "
                    "NAME=LO:HI:log with numbers LO < HI (LO > 0 for log)",
                    path="--range", hint="e.g. --range shared_glb.depth="
                    "1024:65536:log")
  integer = all(isinstance(b, int) for b in bounds)
  return Axis(name=name, low=float(bounds[0]), high=float(bounds[1]),
              log=log, integer=integer)


def grid_points(axes: Sequence[Axis]) -> list[dict]:
  """Every combination of the axes' values (the last axis fastest).

  Raises:
    SpecError: a range axis (a grid needs values).
  """
  for a in axes:
    if a.is_range:
      raise SpecError(f"axis '{a.name}' is a range; a grid needs values",
                      path="--range", hint="Use --grid NAME=v1,v2,... or "
                      "sample the range with --random N or --lhs N.")
  names = [a.name for a in axes]
  return [dict(zip(names, combo))
          for combo in itertools.product(*(a.values for a in axes))]


def random_points(axes: Sequence[Axis], n: int, seed: int = 0) -> list[dict]:
  """``n`` points, each axis drawn independently and uniformly (log-uniform
  for ``log`` ranges)."""
  u = np.random.default_rng([seed, 0x5EE9]).random((n, len(axes)))
  return [{a.name: a.at(u[i, j]) for j, a in enumerate(axes)}
          for i in range(n)]


def lhs_points(axes: Sequence[Axis], n: int, seed: int = 0) -> list[dict]:
  """``n`` points of a Latin hypercube: each axis is cut into ``n`` equal
  strata (of its quantiles) and every stratum is used exactly once."""
  rng = np.random.default_rng([seed, 0x1A5])
  u = np.empty((n, len(axes)))
  for j in range(len(axes)):
    u[:, j] = (rng.permutation(n) + rng.random(n)) / n
  return [{a.name: a.at(u[i, j]) for j, a in enumerate(axes)}
          for i in range(n)]


def make_points(axes: Sequence[Axis], random: Optional[int] = None,
                lhs: Optional[int] = None, seed: int = 0) -> list[dict]:
  """The sweep's points: a grid, or ``random`` / ``lhs`` samples.

  Raises:
    SpecError: both ``random`` and ``lhs``, a count below 1, or no axes.
  """
  if not axes:
    raise SpecError("a sweep needs at least one axis", path="--grid",
                    hint="Add --grid NAME=v1,v2,... or --range NAME=LO:HI.")
  if random is not None and lhs is not None:
    raise SpecError("--random and --lhs both given", path="--lhs",
                    hint="Pick one sampling scheme.")
  count = random if random is not None else lhs
  if count is not None and count < 1:
    raise SpecError(f"a sample of {count} points", path="--random",
                    hint="Give a positive number of points.")
  if random is not None:
    return random_points(axes, random, seed)
  if lhs is not None:
    return lhs_points(axes, lhs, seed)
  return grid_points(axes)
