"""Layer kinds: problems that share one compiled program.

The model's compiled programs are keyed by a :class:`~jaxloop.structure.
Structure`, which holds the problem's dim bounds.  Inside the model the
bounds matter only in four static ways:

* which dims have bound 1 (they are dropped, :mod:`jaxloop.model.unit_dims`);
* the radix of the translation keys (:func:`jaxloop.model.tiling.
  translation_keys`): any upper bound of the bounds gives keys that are
  equal exactly when the translations are, for every legal mapping;
* ``gcd(c1 * bound1, c2 * bound2)`` of each sliding-window rank
  (:func:`jaxloop.model.access._gcd_of_steps`): the gcd of two steps of a
  legal mapping divides it, and any multiple of it gives the same gcd;
* the factor check (``factors_ok``), which takes the bounds as data.

So problems with the same dims of bound 1 and the same window gcds (and
the same architecture, dims, data spaces and projections) are one *kind*:
its structure carries the element-wise largest bounds of its members
(every member's window gcd divides the kind's, since each divides
``c * bound`` for the largest bound too) and the model gets each member's
real bounds as data.  Every legal mapping of a member then gets the same
statistics from the kind's program as from the member's own.  A 3x3
stride-1 conv, a 1x1 conv, a strided conv and a GEMM are different kinds;
ResNet-18's 3x3 convs of every size are one.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Iterable, Sequence

from jaxloop.structure import Structure


def window_gcds(structure: Structure) -> tuple[int, ...]:
  """``gcd(c1 * bound1, c2 * bound2)`` of every two-dim (sliding window)
  rank, in data-space and rank order."""
  out = []
  for ranks in structure.rank_terms:
    for terms in ranks:
      if len(terms) == 2:
        (d1, c1), (d2, c2) = terms
        out.append(math.gcd(c1 * structure.dim_bounds[d1],
                            c2 * structure.dim_bounds[d2]))
  return tuple(out)


def kind_key(structure: Structure) -> tuple:
  """What two problems of one kind have in common (hashable): the
  structure with every bound above 1 replaced by 2, and the window gcds.
  """
  pattern = tuple(1 if b == 1 else 2 for b in structure.dim_bounds)
  return (dataclasses.replace(structure, dim_bounds=pattern),
          window_gcds(structure))


def kind_structure(members: Sequence[Structure]) -> Structure:
  """The structure compiled for a kind: its members' structure with the
  element-wise largest bounds.

  Raises:
    ValueError: the members are not of one kind.
  """
  keys = {kind_key(s) for s in members}
  if len(keys) != 1:
    raise ValueError(f"{len(members)} structures of {len(keys)} kinds "
                     "given as one kind")
  bounds = tuple(max(b) for b in zip(*(s.dim_bounds for s in members)))
  return dataclasses.replace(members[0], dim_bounds=bounds)


def group_kinds(structures: Iterable[Structure]) -> dict[tuple, Structure]:
  """``{kind_key: kind structure}`` of the distinct kinds among
  ``structures``, in order of first appearance."""
  members: dict[tuple, list[Structure]] = {}
  for s in structures:
    members.setdefault(kind_key(s), []).append(s)
  return {k: kind_structure(v) for k, v in members.items()}


def describe(structure: Structure) -> str:
  """A short name of a problem's kind: its dims above 1, its sliding
  windows with their coefficients, and window gcds above 1, e.g.
  ``C,M,R,S,P,Q R+2P,S+2Q gcd 7,7``."""
  names, bounds = structure.dim_names, structure.dim_bounds
  dims = ",".join(n for n, b in zip(names, bounds) if b > 1)
  windows = []
  for ranks in structure.rank_terms:
    for terms in ranks:
      if len(terms) == 2 and all(bounds[d] > 1 for d, _ in terms):
        text = "+".join(f"{c if c != 1 else ''}{names[d]}"
                        for d, c in terms)
        if text not in windows:
          windows.append(text)
  g = [str(x) for x in window_gcds(structure) if x > 1]
  return " ".join([dims] + ([",".join(windows)] if windows else [])
                  + ([f"gcd {','.join(g)}"] if g else []))
