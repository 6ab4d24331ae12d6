"""Is the evaluator's compiled program unchanged between two revisions?

Exports ``--base`` with ``git archive`` to a temporary folder, lowers and
compiles ``jaxloop.evaluator._compiled(structure, (), keep, "batch",
False)`` for the bundled example (256 mappings; all statistics, and the
searches' energy/cycles/valid) in it and in this checkout, and compares the
optimized XLA instructions with metadata, source locations and parameter
names left out.

    python experiments/compare_programs.py [--base 333d22c]
"""
from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROGRAM = """
import re, sys, jax, numpy as np
sys.path.insert(0, sys.argv[1])
import jaxloop
from jaxloop.evaluator import _compiled
wl = jaxloop.load(*jaxloop.example_files())
m = wl.mapspace.sample(np.random.default_rng(0), 256)
with jax.enable_x64(True):
  for keep in (None, ("energy_total", "cycles", "valid")):
    txt = _compiled(wl.structure, (), keep, "batch", False).lower(
        wl.params, m).compile().as_text()
    names = dict(re.findall(r"%([A-Za-z_0-9.]+) = .* parameter[(]([0-9]+)[)]",
                            txt))
    for line in txt.splitlines():
      if " = " in line:
        line = re.sub(r"metadata=[{][^}]*[}]|stack_frame_id=[0-9]*", "", line)
        line = re.sub(r"%([A-Za-z_0-9.]+)", lambda g: "%P" + names[g[1]]
                      if g[1] in names else g[0], line)
        print(re.sub(r"[.][0-9]+", "", line))
"""


def instructions(tree: Path) -> list[str]:
  out = subprocess.run([sys.executable, "-c", PROGRAM, str(tree)],
                       capture_output=True, text=True, check=True)
  return out.stdout.splitlines()


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("--base", default="333d22c")
  args = ap.parse_args()
  with tempfile.TemporaryDirectory() as tmp:
    archive = subprocess.run(["git", "archive", args.base], cwd=ROOT,
                             capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", tmp], input=archive, check=True)
    base, head = instructions(Path(tmp)), instructions(ROOT)
  differ = sum(a != b for a, b in zip(base, head)) + abs(len(base) - len(head))
  print(f"{len(base)} and {len(head)} instructions, {differ} differ")
  for a, b in [(a, b) for a, b in zip(base, head) if a != b][:3]:
    print(f"  base: {a.strip()[:160]}\n  head: {b.strip()[:160]}")
  sys.exit(1 if differ else 0)


if __name__ == "__main__":
  main()
