"""Bandwidth-throttled Timeloop reference cases (tests/data/throttle).

The 20 shared reference cases never let a read, write or shared bandwidth
limit bind.  This script derives cases that do: it takes a reference case's
flattened input (``parsed-processed-input.yaml``, for ``mapper`` cases with
the mapping of ``timeloop-mapper.map.yaml`` put in place of ``mapping: []``;
the ``architecture_constraints``, ``mapper``, ``mapspace`` and
``compound_components`` sections left out: timeloop-model evaluates exactly
that mapping with the given ERT/ART), sets bandwidth
attributes on some storage levels, runs Timeloop's ``timeloop-model`` on it
(through ``tl-model-wrap INDIR OUTDIR``, a Timeloop 0fc43fb build) with the
case's ERT and ART, and stores per case, in the layout of the shared
reference (``cases.json`` + one folder per case):

  parsed-processed-input.yaml   the modified input (architecture, problem,
                                mapping)
  timeloop-model.ERT.yaml/.ART.yaml   the original case's tables
  timeloop-model.stats.txt      Timeloop's output
  expected.json                 its key figures (parsed from stats.txt, the
                                reference's expected.json fields plus each
                                level's "slowdown", Bandwidth throttling)

Usage: python experiments/make_throttle_cases.py [--out tests/data/throttle]
       [--reference ../shared/timeloop-reference] [--wrap PATH] [--only NAME]
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REF = Path(os.environ.get("JAXLOOP_REFERENCE",
                          ROOT.parent / "shared" / "timeloop-reference"))
WRAP = "/opt/timeloop/bin/tl-model-wrap"
TIMELOOP_COMMIT = "0fc43fb51afd2ed5108f2dec9054ffb42d75ebbc"

# name -> (reference case, {level: {attribute: value}}, what binds).
# Values were chosen from the unthrottled demands (words/cycle per instance)
# so that each named limit binds; several make Timeloop's float rounding of
# ceil(C / slowdown) differ from ceil(words / bandwidth).
CASES = {
    "eyeriss_glb_read": (
        "example_designs:eyeriss_like",
        {"shared_glb": {"read_bandwidth": 6.3}},
        "shared_glb read (demand 15.75 words/cycle)"),
    "eyeriss_glb_write_pe_read": (
        "example_designs:eyeriss_like",
        {"shared_glb": {"write_bandwidth": 2},
         "ifmap_spad": {"read_bandwidth": 0.75}},
        "shared_glb write (6.50) sets the total; ifmap_spad read (1.0 per "
        "instance, 168 instances) binds less"),
    "eyeriss_dram_shared": (
        "example_designs:eyeriss_like",
        {"DRAM": {"read_bandwidth": 2.5, "write_bandwidth": 5,
                  "shared_bandwidth": 6}},
        "DRAM shared (R + W = 6.66); read (1.99) and write (4.67) alone "
        "would not bind"),
    "eyeriss_dram_read": (
        "example_designs:eyeriss_like",
        {"DRAM": {"read_bandwidth": 0.25}},
        "DRAM read (1.99)"),
    "simba_glb_write_dram_read": (
        "example_designs:simba_like",
        {"GlobalBuffer": {"write_bandwidth": 4},
         "DRAM": {"read_bandwidth": 0.1}},
        "DRAM read (0.68) sets the total; GlobalBuffer write (6.01) binds "
        "less"),
    "simba_pe_shared": (
        "example_designs:simba_like",
        {"PEAccuBuffer": {"shared_bandwidth": 1.5}},
        "PEAccuBuffer shared (R + W = 2.11 per instance, 64 instances)"),
    "ws_dram_write": (
        "example_designs:simple_weight_stationary",
        {"DRAM": {"write_bandwidth": 0.25}},
        "DRAM write (updates of Outputs, 0.44)"),
    "os_glb_read_dram_write": (
        "example_designs:simple_output_stationary",
        {"shared_glb": {"read_bandwidth": 0.35},
         "DRAM": {"write_bandwidth": 0.5}},
        "shared_glb read (2.14) sets the total (Timeloop's rounding gives "
        "one cycle less than ceil(words / bw)); DRAM write (0.59) binds "
        "less"),
    "os_glb_shared": (
        "example_designs:simple_output_stationary",
        {"shared_glb": {"shared_bandwidth": 2}},
        "shared_glb shared (R + W = 2.40) with its read/write limits of 16 "
        "not binding"),
    "conv1d_3level_mixed": (
        "tutorial:03-model-conv1d+oc-3level:no-bypass",
        {"MainMemory": {"read_bandwidth": 0.05},
         "GlobalBuffer": {"write_bandwidth": 0.3},
         "RegisterFile": {"shared_bandwidth": 3.5}},
        "MainMemory read (0.074) sets the total; GlobalBuffer write (0.41) "
        "and RegisterFile shared (3.92) bind less"),
    "conv1d_spatial_glb_read": (
        "tutorial:04-model-conv1d+oc-3levelspatial:kp",
        {"GlobalBuffer": {"read_bandwidth": 0.1},
         "MainMemory": {"shared_bandwidth": 1}},
        "GlobalBuffer read (0.76 per instance, 16 instances) sets the "
        "total; MainMemory shared (1.35) binds less"),
}


# --- input editing (textual, so the rest of the input stays as it was) ---

def _top_level_blocks(text: str) -> list[tuple[str, int, int]]:
  """``(key, start, end)`` line spans of the top-level YAML keys."""
  lines = text.splitlines(keepends=True)
  starts = [(i, m.group(1)) for i, line in enumerate(lines)
            if (m := re.match(r"([A-Za-z_][\w-]*):", line))]
  return [(key, i, (starts[k + 1][0] if k + 1 < len(starts) else len(lines)))
          for k, (i, key) in enumerate(starts)]


def _replace_block(text: str, key: str, new: str | None) -> str:
  lines = text.splitlines(keepends=True)
  for k, a, b in _top_level_blocks(text):
    if k == key:
      body = [] if new is None else [new if new.endswith("\n") else new + "\n"]
      return "".join(lines[:a] + body + lines[b:])
  raise KeyError(key)


def _set_attributes(text: str, level: str, attrs: dict) -> str:
  """Sets ``attrs`` in the ``attributes:`` of the architecture node named
  ``level`` (``- name: level`` or ``- name: level[1..N]``)."""
  lines = text.splitlines(keepends=True)
  pat = re.compile(r"^(\s*)- name: " + re.escape(level) + r"(\[[^\]]*\])?\s*$")
  hits = [i for i, line in enumerate(lines) if pat.match(line)]
  if len(hits) != 1:
    raise ValueError(f"level {level!r}: {len(hits)} nodes in the input")
  i = hits[0]
  node_indent = len(pat.match(lines[i]).group(1)) + 2
  j = i + 1
  while not re.match(r"^\s*attributes:\s*$", lines[j]):
    if len(lines[j]) - len(lines[j].lstrip()) < node_indent:
      raise ValueError(f"level {level!r} has no attributes block")
    j += 1
  attr_indent = len(lines[j]) - len(lines[j].lstrip()) + 4
  end = j + 1
  while end < len(lines) and (
      len(lines[end]) - len(lines[end].lstrip()) >= attr_indent
      or not lines[end].strip()):
    end += 1
  body = lines[j + 1:end]
  for key, value in attrs.items():
    new = " " * attr_indent + f"{key}: {value}\n"
    at = [k for k, line in enumerate(body)
          if re.match(r"^\s*" + re.escape(key) + r"\s*:", line)]
    if at:
      body[at[0]] = new
    else:
      body.append(new)
  return "".join(lines[:j + 1] + body + lines[end:])


def make_input(case: dict, limits: dict) -> str:
  d = REF / case["dir"]
  text = (d / case["input"]).read_text()
  if case["mapping"] != case["input"]:
    text = _replace_block(text, "mapping",
                          (d / case["mapping"]).read_text().rstrip("\n"))
  for key in ("architecture_constraints", "mapper", "mapspace",
              "compound_components"):
    if any(k == key for k, _, _ in _top_level_blocks(text)):
      text = _replace_block(text, key, None)
  for level, attrs in limits.items():
    text = _set_attributes(text, level, attrs)
  return text


# --- Timeloop's stats.txt -> expected.json ---

def _num(s: str) -> float:
  return float(s.split()[0])


def parse_stats(text: str) -> dict:
  """Key figures of a timeloop-model stats.txt (expected.json layout of
  the shared reference, plus ``slowdown`` per storage level)."""
  levels = []
  summary = {"fj_per_compute": {}}
  lines = text.splitlines()
  cur, ds, section = None, None, None
  in_fj = False
  for raw in lines:
    line = raw.strip()
    if m := re.match(r"^Level (\d+)$", line):
      cur = {"index": int(m.group(1)), "dataspaces": {}}
      levels.append(cur)
      ds, section = None, None
      continue
    if cur is not None and (m := re.match(r"^=== (.+) ===$", line)) \
        and "name" not in cur:
      cur["name"] = m.group(1)
      continue
    if line.startswith("Networks") or line == "Operational Intensity Stats":
      cur = None
      continue
    if line == "Summary Stats":
      cur = None
      continue
    if line in ("SPECS", "STATS", "MAPPING"):
      section = line
      continue
    if ":" in line and cur is not None:
      key, _, val = (p.strip() for p in line.partition(":"))
      if section == "SPECS" and key == "Instances":
        cur["instances"] = int(_num(val))
      elif section == "STATS":
        if val == "" and re.match(r"^\w+$", key):
          ds = cur["dataspaces"].setdefault(key, {})
          continue
        if cur["index"] == 0:
          f = {"Utilized instances": "utilized_instances",
               "Computes (total)": "computes", "Cycles": "cycles",
               "Energy (total)": "energy_pj"}.get(key)
          if f:
            cur[f] = _num(val)
        elif ds is None:
          if key == "Cycles":
            cur["cycles"] = _num(val)
          elif key == "Bandwidth throttling":
            cur["slowdown"] = _num(val)
        else:
          f = {"Utilized capacity": "utilized_capacity",
               "Utilized instances (max)": "utilized_instances",
               "Scalar reads (per-instance)": "reads",
               "Scalar fills (per-instance)": "fills",
               "Scalar updates (per-instance)": "updates",
               "Temporal reductions (per-instance)": "temporal_reductions",
               "Energy (total)": "energy_pj"}.get(key)
          if f:
            ds[f] = _num(val)
      continue
    if cur is None:
      if line.startswith("fJ/Compute"):
        in_fj = True
        continue
      if in_fj and "=" in line:
        k, _, v = (p.strip() for p in line.partition("="))
        summary["fj_per_compute"][k] = float(v)
        continue
      m = re.match(r"^(GFLOPs \(@1GHz\)|Utilization|Cycles|Energy|"
                   r"EDP\(J\*cycle\)|Area): (.+)$", line)
      if m:
        key = {"GFLOPs (@1GHz)": "gflops", "Utilization": "utilization_pct",
               "Cycles": "cycles", "Energy": "energy_uj",
               "EDP(J*cycle)": "edp", "Area": "area_mm2"}[m.group(1)]
        summary[key] = float(m.group(2).split()[0].rstrip("%"))
      elif m := re.match(r"^Computes = (\d+)$", line):
        summary["computes"] = float(m.group(1))
  # Storage-less inter_*_spatial levels have no "Level" block in stats.txt
  # (so none here either, as in the shared reference's expected.json).
  return {"levels": levels, "summary": summary}


def run_timeloop(wrap: str, files: dict[str, str]) -> str:
  """Runs ``wrap INDIR OUTDIR`` on the YAML texts ``files``; returns the
  stats.txt text."""
  with tempfile.TemporaryDirectory() as tmp:
    indir, outdir = Path(tmp) / "in", Path(tmp) / "out"
    indir.mkdir()
    outdir.mkdir()
    for name, text in files.items():
      (indir / name).write_text(text)
    proc = subprocess.run([wrap, str(indir), str(outdir)],
                          capture_output=True, text=True)
    stats = sorted(outdir.rglob("*.stats.txt"))
    if proc.returncode != 0 or not stats:
      raise RuntimeError(f"{wrap} failed (rc {proc.returncode}):\n"
                         f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return stats[0].read_text()


def main():
  ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  ap.add_argument("--out", type=Path, default=ROOT / "tests" / "data" /
                  "throttle")
  ap.add_argument("--reference", type=Path, default=None)
  ap.add_argument("--wrap", default=WRAP)
  ap.add_argument("--only", action="append", default=None)
  args = ap.parse_args()
  global REF
  if args.reference is not None:
    REF = args.reference
  ref_cases = {c["name"]: c for c in
               json.loads((REF / "cases.json").read_text())}
  args.out.mkdir(parents=True, exist_ok=True)
  index_path = args.out / "cases.json"
  index = {c["name"]: c for c in (json.loads(index_path.read_text())
                                  if index_path.is_file() else [])}
  for name, (source, limits, binds) in CASES.items():
    if args.only and name not in args.only:
      continue
    case = ref_cases[source]
    d = REF / case["dir"]
    text = make_input(case, limits)
    ert, art = (d / case["ert"]).read_text(), (d / case["art"]).read_text()
    stats = run_timeloop(args.wrap, {"parsed-processed-input.yaml": text,
                                     "ERT.yaml": ert, "ART.yaml": art})
    out = args.out / name
    if out.exists():
      shutil.rmtree(out)
    out.mkdir()
    (out / "parsed-processed-input.yaml").write_text(text)
    (out / "timeloop-model.ERT.yaml").write_text(ert)
    (out / "timeloop-model.ART.yaml").write_text(art)
    (out / "timeloop-model.stats.txt").write_text(stats)
    expected = parse_stats(stats)
    (out / "expected.json").write_text(json.dumps(expected, indent=1) + "\n")
    index[name] = {
        "name": name, "dir": name, "kind": "model", "source": source,
        "limits": limits, "binds": binds,
        "input": "parsed-processed-input.yaml",
        "ert": "timeloop-model.ERT.yaml", "art": "timeloop-model.ART.yaml",
        "mapping": "parsed-processed-input.yaml",
        "stats": "timeloop-model.stats.txt", "expected": "expected.json",
        "summary": expected["summary"],
    }
    slow = {lv["name"]: (lv["cycles"], lv.get("slowdown"))
            for lv in expected["levels"]}
    print(f"{name}: cycles {expected['summary']['cycles']:.0f}  "
          f"per level (cycles, throttling) {slow}", flush=True)
  index_path.write_text(json.dumps(
      [index[k] for k in CASES if k in index], indent=1) + "\n")


if __name__ == "__main__":
  main()
