"""Fuzzes the spec readers with mutated Timeloop inputs.

Takes the inputs of the reference cases (``cases.json``) and of the bundled
example, applies one random mutation to one file (delete a key's line, rename
a key, change a value's type, perturb a number, delete any line), loads the
result the way ``jaxloop model`` does (spec, structure, parameters, the
mapping's arrays; ``--evaluate`` also runs the model on what loads), and
counts the outcomes:

  ok                     loaded (and evaluated) fine
  SpecError              rejected with a located message
  UnsupportedFeatureError  rejected as a feature jaxloop does not model
  other                  any other exception: a bug (shown with the mutation)

    python experiments/fuzz_spec.py --seconds 60 [--seed 0] [--evaluate]
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import random
import re
import sys
import tempfile
import time
import traceback
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from jaxloop.errors import SpecError, UnsupportedFeatureError  # noqa: E402

REFERENCE = Path(os.environ.get(
    "JAXLOOP_REFERENCE", ROOT.parent / "shared" / "timeloop-reference"))
EXAMPLE = ROOT / "jaxloop" / "specs" / "example"

_KEY_LINE = re.compile(r"^(\s*(?:-\s+)?)([A-Za-z_][\w\-]*)(\s*:)(.*)$")
_NUMBER = re.compile(r"(?<![\w.])-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?(?![\w.])")
_NEW_VALUES = ("abc", "[1, 2]", "{a: 1}", "null", "true", "-1", "0", "1.5",
               "''", "[]", "{}", "99999999999999999999", "M", "Weights",
               "1e400", "nan")
_KEY_NAMES = ("name", "class", "attributes", "depth", "width", "datawidth",
              "factors", "permutation", "target", "type", "keep", "bypass",
              "split", "instance", "shape", "dimensions", "data_spaces",
              "projection", "meshX", "subtree", "local", "nodes", "energy",
              "actions", "tables", "read_write", "coefficients", "version")


@dataclasses.dataclass
class Input:
  """One fuzz target: named files (name -> text) in Timeloop merge order."""
  name: str
  files: dict


def load_inputs() -> list[Input]:
  """The reference cases (when present) and the bundled example."""
  out = [Input("example", {p.name: p.read_text()
                           for p in sorted(EXAMPLE.glob("*.yaml"))})]
  if (REFERENCE / "cases.json").is_file():
    for case in json.loads((REFERENCE / "cases.json").read_text()):
      d = REFERENCE / case["dir"]
      names = [case["input"]]
      if case["mapping"] != case["input"]:
        names.append(case["mapping"])
      names += [case["ert"], case["art"]]
      out.append(Input(case["name"], {n: (d / n).read_text()
                                       for n in names}))
  return out


def _typo(key: str, rng: random.Random) -> str:
  i = rng.randrange(len(key))
  kind = rng.randrange(4)
  if kind == 0 and len(key) > 1:
    return key[:i] + key[i + 1:]
  if kind == 1:
    return key[:i] + rng.choice("abcdexyz_") + key[i:]
  if kind == 2 and len(key) > 2 and i < len(key) - 1:
    return key[:i] + key[i + 1] + key[i] + key[i + 2:]
  return rng.choice(_KEY_NAMES)


def mutate(text: str, rng: random.Random) -> tuple[str, str]:
  """One random mutation of a YAML text; returns (text, description)."""
  lines = text.split("\n")
  keyed = [i for i, l in enumerate(lines) if _KEY_LINE.match(l)]
  numbered = [i for i, l in enumerate(lines)
              if _NUMBER.search(l) and not l.lstrip().startswith("#")]
  kind = rng.choice(["delete_key", "rename_key", "retype_value",
                     "perturb_number", "delete_line", "duplicate_line",
                     "indent_line", "swap_lines"])
  if kind in ("delete_key", "rename_key", "retype_value") and not keyed:
    kind = "delete_line"
  if kind == "perturb_number" and not numbered:
    kind = "delete_line"
  if kind == "delete_key":
    i = rng.choice(keyed)
    desc = f"delete line {i + 1} ({lines[i].strip()[:50]})"
    del lines[i]
  elif kind == "rename_key":
    i = rng.choice(keyed)
    m = _KEY_LINE.match(lines[i])
    new = _typo(m.group(2), rng)
    lines[i] = m.group(1) + new + m.group(3) + m.group(4)
    desc = f"line {i + 1}: rename '{m.group(2)}' to '{new}'"
  elif kind == "retype_value":
    i = rng.choice(keyed)
    m = _KEY_LINE.match(lines[i])
    new = rng.choice(_NEW_VALUES)
    lines[i] = m.group(1) + m.group(2) + m.group(3) + " " + new
    desc = f"line {i + 1}: '{m.group(2)}' value -> {new}"
  elif kind == "perturb_number":
    i = rng.choice(numbered)
    spots = list(_NUMBER.finditer(lines[i]))
    m = rng.choice(spots)
    v = float(m.group(0))
    new = rng.choice([0, -1, -v, v * 2, v + 1, v / 3, 10**12, 2**40 + 1, 7])
    new_text = str(int(new)) if float(new).is_integer() else f"{new:.3f}"
    lines[i] = lines[i][:m.start()] + new_text + lines[i][m.end():]
    desc = f"line {i + 1}: number {m.group(0)} -> {new_text}"
  elif kind == "delete_line":
    i = rng.randrange(len(lines))
    desc = f"delete line {i + 1} ({lines[i].strip()[:50]})"
    del lines[i]
  elif kind == "duplicate_line":
    i = rng.randrange(len(lines))
    lines.insert(i, lines[i])
    desc = f"duplicate line {i + 1} ({lines[i].strip()[:50]})"
  elif kind == "indent_line":
    i = rng.randrange(len(lines))
    shift = rng.choice([-4, -2, 2, 4])
    lines[i] = (" " * shift + lines[i]) if shift > 0 else \
        lines[i][min(-shift, len(lines[i]) - len(lines[i].lstrip())):]
    desc = f"line {i + 1}: indent by {shift}"
  else:
    i = rng.randrange(len(lines))
    j = min(len(lines) - 1, i + rng.randint(1, 3))
    lines[i], lines[j] = lines[j], lines[i]
    desc = f"swap lines {i + 1} and {j + 1}"
  return "\n".join(lines), desc


def run_one(inp: Input, rng: random.Random, workdir: Path,
            evaluate: bool = False) -> tuple[str, str, str]:
  """Mutates one file of ``inp``, loads everything; returns the outcome.

  Returns:
    ``(outcome, description, detail)``; outcome is ``ok``, ``SpecError``,
    ``UnsupportedFeatureError`` or ``other``.
  """
  from jaxloop import api
  name = rng.choice(sorted(inp.files))
  text, desc = mutate(inp.files[name], rng)
  desc = f"{inp.name}: {name}: {desc}"
  paths = []
  for n, t in inp.files.items():
    p = workdir / n
    p.write_text(text if n == name else t)
    paths.append(p)
  try:
    with warnings.catch_warnings():
      warnings.simplefilter("ignore")
      wl = api.load(*paths)
      mapping = wl.mapping()
      if evaluate:
        stats = wl.evaluate(mapping)
        wl.stats_dict(stats)
  except SpecError as e:
    msg = str(e)
    if not e.where and not e.path:
      return "other", desc, f"SpecError without location: {msg}"
    return "SpecError", desc, msg
  except UnsupportedFeatureError as e:
    return "UnsupportedFeatureError", desc, str(e)
  except Exception:  # noqa: BLE001 - a bug: report it
    return "other", desc, traceback.format_exc(limit=-4)
  return "ok", desc, ""


def fuzz(seconds: float = 60.0, seed: int = 0, max_runs: int | None = None,
         evaluate: bool = False, verbose: bool = False) -> dict:
  """Runs mutations until the time or run budget is spent.

  Returns:
    ``{"counts": {outcome: n}, "bugs": [(description, detail), ...],
    "runs": n, "seconds": s, "slowest": (seconds, description)}``.
  """
  rng = random.Random(seed)
  inputs = load_inputs()
  counts = {"ok": 0, "SpecError": 0, "UnsupportedFeatureError": 0,
            "other": 0}
  bugs = []
  slowest = (0.0, "")
  start = time.monotonic()
  runs = 0
  with tempfile.TemporaryDirectory() as tmp:
    while time.monotonic() - start < seconds and (max_runs is None or
                                                   runs < max_runs):
      k = rng.randrange(len(inputs))
      workdir = Path(tmp) / str(k)  # one folder per input, overwritten
      workdir.mkdir(exist_ok=True)
      t0 = time.monotonic()
      outcome, desc, detail = run_one(inputs[k], rng, workdir, evaluate)
      took = time.monotonic() - t0
      if took > slowest[0]:
        slowest = (took, desc)
      counts[outcome] += 1
      if outcome == "other":
        bugs.append((desc, detail))
      if verbose:
        print(f"{outcome:24s} {desc}")
      runs += 1
  return {"counts": counts, "bugs": bugs, "runs": runs,
          "seconds": time.monotonic() - start, "slowest": slowest}


def main(argv=None) -> int:
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--seconds", type=float, default=60.0)
  ap.add_argument("--seed", type=int, default=0)
  ap.add_argument("--evaluate", action="store_true",
                  help="also run the model on inputs that load")
  ap.add_argument("-v", "--verbose", action="store_true")
  args = ap.parse_args(argv)
  res = fuzz(args.seconds, args.seed, evaluate=args.evaluate,
             verbose=args.verbose)
  print(f"{res['runs']} mutations in {res['seconds']:.1f} s "
        f"(seed {args.seed}{', with evaluation' if args.evaluate else ''})")
  for k, v in res["counts"].items():
    print(f"  {k:24s} {v:6d}")
  print(f"  slowest mutation: {res['slowest'][0]:.2f} s ({res['slowest'][1]})")
  for desc, detail in res["bugs"][:20]:
    print(f"\nBUG: {desc}\n{detail}")
  return 1 if res["bugs"] else 0


if __name__ == "__main__":
  sys.exit(main())
