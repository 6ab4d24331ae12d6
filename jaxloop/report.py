"""Stats -> Timeloop-style JSON and text (views; no jax).

``stats_dict`` follows the layout of the reference ``expected.json`` files:
levels in Timeloop's order (index 0 = arithmetic), per-instance counts per
data space, and a summary with cycles, energy, utilization, GFLOPs, EDP,
area and fJ/compute per level.
"""
from __future__ import annotations

import numpy as np

from jaxloop.structure import Structure
from jaxloop.types import Stats, edp


def _np(stats: Stats) -> dict:
  return {k: np.asarray(v) for k, v in vars(stats).items()}


def total_ops(structure: Structure, s: dict) -> float:
  """Timeloop's op count: MACs + reductions (first-read elision on).

  ``computes + (computes - out_size)``, out_size being the read-write data
  held at the outermost level that keeps it.
  """
  computes = float(s["computes"])
  out_size = 0.0
  for j, rw in enumerate(structure.read_write):
    if not rw:
      continue
    caps = s["utilized_capacity"][:, j]
    kept = np.nonzero(caps > 0)[0]
    if kept.size:
      out_size += float(caps[kept[-1]])
  return computes + (computes - out_size)


def stats_dict(structure: Structure, stats: Stats) -> dict:
  """One mapping's stats as a JSON-ready dict (expected.json layout)."""
  s = _np(stats)
  computes = float(s["computes"])
  cycles = float(s["cycles"])
  energy = float(s["energy_total"])
  levels = [{
      "index": 0, "name": structure.compute_name, "dataspaces": {},
      "instances": structure.compute_instances,
      "utilized_instances": float(s["compute_utilized_instances"]),
      "computes": computes,
      "cycles": computes / max(float(s["compute_utilized_instances"]), 1.0),
      "energy_pj": float(s["compute_energy"]),
  }]
  fj = {structure.compute_name: float(s["compute_energy"]) * 1e3 / computes}
  for i, name in enumerate(structure.level_names):
    kept = s["utilized_capacity"][i] > 0
    dataspaces = {}
    for j, ds in enumerate(structure.dataspace_names):
      if not kept[j]:
        continue
      dataspaces[ds] = {
          "utilized_capacity": float(s["utilized_capacity"][i, j]),
          "utilized_instances": float(s["utilized_instances"][i, j]),
          "reads": float(s["reads"][i, j]),
          "fills": float(s["fills"][i, j]),
          "updates": float(s["updates"][i, j]),
          "temporal_reductions": float(s["temporal_reductions"][i, j]),
          "energy_pj": float(s["energy"][i, j]),
      }
    levels.append({
        "index": i + 1, "name": name, "dataspaces": dataspaces,
        "instances": structure.instances[i],
        "cycles": float(s["level_cycles"][i]),
        "leakage_pj": float(s["leakage"][i]),
        "energy_pj": float(s["level_energy"][i]),
    })
    if float(s["level_energy"][i]) != 0.0:
      fj[name] = float(s["level_energy"][i]) * 1e3 / computes
  fj["Total"] = energy * 1e3 / computes
  ops = total_ops(structure, s)
  summary = {
      "cycles": cycles,
      "energy_uj": energy / 1e6,
      "energy_pj": energy,
      "utilization_pct": float(s["utilization"]) * 100.0,
      "gflops": ops / cycles,
      "edp": edp(energy, cycles),
      "area_mm2": float(s["area"]) / 1e6,
      "computes": computes,
      "fj_per_compute": fj,
      "valid": bool(s["valid"]),
      "capacity_ok": bool(s["capacity_ok"]),
      "fanout_ok": bool(s["fanout_ok"]),
  }
  return {"levels": levels, "summary": summary}


def stats_text(structure: Structure, stats: Stats, title: str = "") -> str:
  """Human-readable report in the spirit of Timeloop's stats.txt."""
  d = stats_dict(structure, stats)
  out = []
  if title:
    out += [title, "=" * len(title), ""]
  out += ["Buffer and Arithmetic Levels", "----------------------------"]
  for lv in d["levels"]:
    out += [f"Level {lv['index']}", "-------", f"=== {lv['name']} ===", ""]
    out.append(f"    Instances               : {lv['instances']}")
    if lv["index"] == 0:
      out += [
          f"    Utilized instances      : {lv['utilized_instances']:.0f}",
          f"    Computes (total)        : {lv['computes']:.0f}",
          f"    Cycles                  : {lv['cycles']:.0f}",
          f"    Energy (total)          : {lv['energy_pj']:.2f} pJ", ""]
      continue
    out += [f"    Cycles                  : {lv['cycles']:.0f}",
            f"    Leakage energy (total)  : {lv['leakage_pj']:.2f} pJ"]
    for ds, v in lv["dataspaces"].items():
      out += [
          f"    {ds}:",
          f"        Utilized capacity                  : "
          f"{v['utilized_capacity']:.0f}",
          f"        Utilized instances (max)           : "
          f"{v['utilized_instances']:.0f}",
          f"        Scalar reads (per-instance)        : {v['reads']:.0f}",
          f"        Scalar fills (per-instance)        : {v['fills']:.0f}",
          f"        Scalar updates (per-instance)      : {v['updates']:.0f}",
          f"        Temporal reductions (per-instance) : "
          f"{v['temporal_reductions']:.0f}",
          f"        Energy (total)                     : "
          f"{v['energy_pj']:.2f} pJ"]
    out.append("")
  sm = d["summary"]
  out += ["Summary Stats", "-------------",
          f"GFLOPs (@1GHz): {sm['gflops']:.2f}",
          f"Utilization: {sm['utilization_pct']:.2f}%",
          f"Cycles: {sm['cycles']:.0f}",
          f"Energy: {sm['energy_uj']:.2f} uJ",
          f"EDP(J*cycle): {sm['edp']:.2e}",
          f"Area: {sm['area_mm2']:.2f} mm^2",
          f"Valid: {sm['valid']} (capacity {sm['capacity_ok']}, "
          f"fan-out {sm['fanout_ok']})", "",
          f"Computes = {sm['computes']:.0f}", "fJ/Compute"]
  for name, v in sm["fj_per_compute"].items():
    out.append(f"    {name:<40} = {v:.2f}")
  return "\n".join(out) + "\n"
