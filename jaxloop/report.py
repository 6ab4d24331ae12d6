"""Stats -> Timeloop-style JSON and text (views; no jax).

``stats_dict`` follows the layout of the reference ``expected.json`` files:
levels in Timeloop's order (index 0 = arithmetic), per-instance counts per
data space, and a summary with cycles, energy, utilization, GFLOPs, EDP,
area and fJ/compute per level.  ``stats_text`` is Timeloop's
``stats.txt``: the same sections, labels, order and number formats, with
the quantities Timeloop derives from the counts (partition sizes, address
generations, per-instance energies and bandwidths, operational intensity)
derived the same way.
"""
from __future__ import annotations

import numpy as np

from jaxloop.structure import Structure
from jaxloop.types import Stats, edp


def _np(stats: Stats) -> dict:
  return {k: np.asarray(v) for k, v in vars(stats).items()}


def outermost_capacities(structure: Structure, s: dict) -> list[int]:
  """``[S]`` utilized capacity of each data space at the outermost level
  keeping it (Timeloop's "memory accesses required")."""
  out = []
  for j in range(structure.num_dataspaces):
    caps = s["utilized_capacity"][:, j]
    kept = np.nonzero(caps > 0)[0]
    out.append(int(caps[kept[-1]]) if kept.size else 0)
  return out


def total_ops(structure: Structure, s: dict) -> float:
  """Timeloop's op count: MACs + reductions (first-read elision on).

  ``computes + (computes - out_size)``, out_size being the read-write data
  held at the outermost level that keeps it.
  """
  computes = float(s["computes"])
  out_size = sum(c for c, rw in zip(outermost_capacities(structure, s),
                                    structure.read_write) if rw)
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


# --------------------------------------------------------------------------
# stats.txt as Timeloop prints it (NVlabs/timeloop 0fc43fb:
# src/model/topology.cpp operator<<, buffer.cpp BufferLevel::Print,
# arithmetic.cpp ArithmeticUnits::Print): doubles with 2 decimals
# (OUT_FLOAT_FORMAT), counts as integers, levels that neither access nor
# spend energy hidden (gHideInconsequentialStats, on by default).


def _f(x: float) -> str:
  return f"{float(x):.2f}"


def _opt(x) -> str:
  """An Attribute: its value, ``-`` when unspecified."""
  return "-" if x is None else _f(x)


def _box(structure: Structure, extents) -> list[int]:
  """Points of each data space in an op-space box (Timeloop's
  ProjectLowHigh box: ``prod_r (sum c * (E - 1) + 1)``)."""
  out = []
  for ranks in structure.rank_terms:
    n = 1
    for terms in ranks:
      n *= sum(c * (int(extents[d]) - 1) for d, c in terms) + 1
    out.append(n)
  return out


def partition_sizes(structure: Structure, mapping) -> np.ndarray:
  """``[L, S]`` Timeloop's "Partition size" (tiling.cpp
  ComputePartitionSizes): the outermost level's tile, then inward the
  parent's partition times the level's tile over the spatial union of the
  parent's children (integer division)."""
  t = np.asarray(mapping.temporal, np.int64)
  sp = np.asarray(mapping.spatial_x, np.int64) * \
      np.asarray(mapping.spatial_y, np.int64)
  L = structure.num_levels
  cum = [np.ones(structure.num_dims, np.int64)]
  for l in range(L):
    cum.append(cum[-1] * t[l] * sp[l])
  size = [_box(structure, cum[l + 1]) for l in range(L)]
  union = [_box(structure, cum[l] * sp[l]) for l in range(L)]
  part = [None] * L
  part[L - 1] = size[L - 1]
  for i in range(L - 2, -1, -1):
    part[i] = [p * s // u for p, s, u in
               zip(part[i + 1], size[i], union[i + 1])]
  return np.asarray(part, np.int64)


def _slowdown(reads, writes, cycles: float, bw_read: float, bw_write: float,
              bw_shared: float) -> float:
  """Bandwidth throttling of one level (buffer.cpp ComputePerformance):
  ``reads``/``writes`` per data space, bandwidths ``inf`` when unset."""
  r = 0.0
  w = 0.0
  for x in reads:
    r += float(x) / cycles
  for x in writes:
    w += float(x) / cycles
  slow = 1.0
  if bw_read < r:
    slow = min(slow, bw_read / r)
  if bw_write < w:
    slow = min(slow, bw_write / w)
  if bw_shared < w + r:
    slow = min(slow, bw_shared / (w + r))
  return slow


def _technology(lvl) -> str:
  """Timeloop's buffer technology: DRAM when the class says so (or the
  ``technology`` attribute is ``DRAM``), else SRAM."""
  tech = dict(lvl.attributes).get("technology")
  return "DRAM" if "DRAM" in lvl.cls or tech == "DRAM" else "SRAM"


def _vector_access_energy(ert, lvl) -> float:
  """The largest action energy of the level's ERT entry over its cluster
  size (topology.cpp ParseAccelergyERT, UpdateOpEnergyViaERT)."""
  actions = None if ert is None else ert.lookup(lvl.ert_name or lvl.name)
  if not actions:
    return 0.0
  return max(0.0, max(float(a.energy) for a in actions)) / lvl.cluster_size


class _Level:
  """One storage level's derived statistics (per data space lists)."""

  def __init__(self, structure: Structure, s: dict, params, mapping,
               partition, i: int, compute_cycles: float):
    self.i = i
    S = structure.num_dataspaces
    keep = np.asarray(mapping.keep)[i]
    self.kept = [bool(keep[j]) and not structure.is_dummy[i]
                 and s["utilized_capacity"][i, j] > 0 for j in range(S)]
    g = lambda k: [float(s[k][i, j]) for j in range(S)]
    self.reads, self.fills, self.updates = g("reads"), g("fills"), g("updates")
    self.reductions, self.capacity = g("temporal_reductions"), \
        g("utilized_capacity")
    self.instances, self.energy = g("utilized_instances"), g("energy")
    self.partition = [int(x) for x in partition[i]]
    rw = structure.read_write
    self.writes = [f + u for f, u in zip(self.fills, self.updates)]
    self.addr = [(u if rw[j] else r) + f for j, (r, f, u) in enumerate(
        zip(self.reads, self.fills, self.updates))]
    clusters = structure.instances[i] // structure.cluster_size[i]
    self.clusters = [min(int(n), clusters) for n in self.instances]
    self.slowdown = _slowdown(
        self.reads, self.writes, compute_cycles,
        float(np.asarray(params.read_bandwidth)[i]),
        float(np.asarray(params.write_bandwidth)[i]),
        float(np.asarray(params.shared_bandwidth)[i]))
    self.cycles = float(s["level_cycles"][i])
    self.compute_cycles = compute_cycles
    self.leakage = float(s["leakage"][i])
    self.level_energy = float(s["level_energy"][i])
    self.accesses = sum(int(n * (r + u + f)) for n, r, u, f, k in zip(
        self.instances, self.reads, self.updates, self.fills, self.kept) if k)

  @property
  def shown(self) -> bool:
    return self.accesses != 0 or self.level_energy != 0

  def dataspace_lines(self, j: int) -> list[str]:
    """The STATS block of data space j (buffer.cpp, dense branch)."""
    n = self.instances[j]
    per_instance = self.energy[j] / n if n > 0 else 0.0
    accesses = self.reads[j] + self.fills[j] + self.updates[j]
    per_access = per_instance / accesses if n > 0 and accesses else 0.0
    c = self.compute_cycles
    rd = self.slowdown * (self.reads[j] / c)
    wr = self.slowdown * (self.writes[j] / c)
    sh = self.slowdown * (self.reads[j] / c + self.writes[j] / c)
    rows = [
        ("Partition size", f"{self.partition[j]}"),
        ("Utilized capacity", f"{self.capacity[j]:.0f}"),
        ("Utilized instances (max)", f"{int(n)}"),
        ("Utilized clusters (max)", f"{self.clusters[j]}"),
        ("Scalar reads (per-instance)", f"{self.reads[j]:.0f}"),
        ("Scalar fills (per-instance)", f"{self.fills[j]:.0f}"),
        ("Scalar updates (per-instance)", f"{self.updates[j]:.0f}"),
        ("Temporal reductions (per-instance)", f"{self.reductions[j]:.0f}"),
        ("Address generations (per-cluster)", f"{self.addr[j]:.0f}"),
        ("Energy (per-scalar-access)", _f(per_access) + " pJ"),
        ("Energy (per-instance)", _f(per_instance) + " pJ"),
        ("Energy (total)", _f(per_instance * n) + " pJ"),
        # pat::AdderEnergy is 0 in 0fc43fb; no addr_gen_energy modelled.
        ("Temporal Reduction Energy (per-instance)", "0.00 pJ"),
        ("Temporal Reduction Energy (total)", "0.00 pJ"),
        ("Address Generation Energy (per-cluster)", "0.00 pJ"),
        ("Address Generation Energy (total)", "0.00 pJ"),
        ("Bandwidth Consumption Scale", "1.00"),
        ("Shared Bandwidth (per-instance)", _f(sh) + " words/cycle"),
        ("Shared Bandwidth (total)", _f(sh * n) + " words/cycle"),
        ("Read Bandwidth (per-instance)", _f(rd) + " words/cycle"),
        ("Read Bandwidth (total)", _f(rd * n) + " words/cycle"),
        ("Write Bandwidth (per-instance)", _f(wr) + " words/cycle"),
        ("Write Bandwidth (total)", _f(wr * n) + " words/cycle"),
    ]
    return [f"        {k:<40} : {v}" for k, v in rows]


def _storage_block(structure: Structure, lvl, level: _Level, params, ert,
                   loops) -> list[str]:
  """``=== Name ===`` with SPECS, MAPPING and STATS of a storage level."""
  i = level.i
  size = lvl.size
  eff = None if size is None else int(np.floor(size / lvl.multiple_buffering))
  specs = [
      ("Technology", _technology(lvl)),
      ("Size", "-" if size is None else f"{size}"),
      ("Word bits", f"{lvl.word_bits}"),
      ("Block size", f"{lvl.block_size}"),
      ("Cluster size", f"{lvl.cluster_size}"),
      ("Instances", f"{lvl.instances} ({lvl.mesh_x}*{lvl.mesh_y})"),
      ("Shared bandwidth", _opt(lvl.shared_bandwidth)),
      ("Read bandwidth", _opt(lvl.read_bandwidth)),
      ("Write bandwidth", _opt(lvl.write_bandwidth)),
      ("Multiple buffering", _f(lvl.multiple_buffering)),
      ("Effective size", "-" if eff is None else f"{eff}"),
      ("Min utilization", _f(lvl.min_utilization)),
      ("Vector access energy", _f(_vector_access_energy(ert, lvl)) + " pJ"),
      ("Vector access energy source", "ERT"),
      ("Per-instance-cycle leakage",
       _f(np.asarray(params.leak_energy)[i]) + " pJ"),
      ("Instances sharing power gating", "1.00"),
      ("Non-power-gated utilization", "100.00%"),
      ("Leakage energy (total)", _f(level.leakage) + " pJ"),
      ("Area", _f(np.asarray(params.area)[i]) + " um^2"),
  ]
  out = [f"=== {lvl.name} ===", "", "    SPECS", "    -----"]
  out += [f"        {k:<31} : {v}" for k, v in specs]
  out += ["", "    MAPPING", "    -------", "    Loop nest:"]
  pad = "      "
  for loop in reversed(loops):
    out.append(pad + loop.text(structure))
    pad += "  "
  out += ["", "    STATS", "    -----",
          f"    Cycles               : {level.cycles:.0f}",
          f"    Bandwidth throttling : {_f(level.slowdown)}"]
  for j, name in enumerate(structure.dataspace_names):
    if level.kept[j]:
      out.append(f"    {name}:")
      out += level.dataspace_lines(j)
  return out + [""]


def _arithmetic_block(structure: Structure, comp, s: dict, params,
                      compute_cycles: float) -> list[str]:
  return [
      f"=== {comp.name} ===", "", "    SPECS", "    -----",
      f"    Word bits             : {comp.word_bits}",
      f"    Instances             : {comp.instances} "
      f"({comp.mesh_x}*{comp.mesh_y})",
      f"    Compute energy        : {_f(params.compute_energy)} pJ", "",
      "    STATS", "    -----",
      f"    Utilized instances      : "
      f"{float(s['compute_utilized_instances']):.0f}",
      f"    Computes (total)        : {float(s['computes']):.0f}",
      f"    Cycles                  : {compute_cycles:.0f}",
      f"    Energy (total)          : {_f(s['compute_energy'])} pJ",
      f"    Area (total)            : "
      f"{_f(float(params.compute_area) * structure.compute_instances)} um^2",
      ""]


def _op_per_byte(ops: int, word_bits: int, accesses: int) -> float:
  """``float(total_ops) / (word_bits * accesses / 8)``: integer division
  of the denominator, then a C float quotient (topology.cpp)."""
  return float(np.float32(ops) / np.float32(word_bits * accesses // 8))


def _intensity_block(structure: Structure, s: dict,
                     levels) -> tuple[list[str], int]:
  """Operational Intensity Stats, and the total op count."""
  computes = int(float(s["computes"]))
  total = int(total_ops(structure, s))
  total_min = sum(outermost_capacities(structure, s))
  row = lambda k, v: f"    {k:<40}: {v}"
  out = ["", "Operational Intensity Stats", "---------------------------",
         row("Total elementwise ops", computes),
         row("Total reduction ops", total - computes),
         row("Total ops", total),
         row("Total memory accesses required", total_min),
         row("Optimal Op per Byte", _f(_op_per_byte(
             total, structure.word_bits[-1], total_min))), ""]
  for i, name in enumerate(structure.level_names):
    out.append(f"=== {name} ===")
    n = levels[i].accesses
    if n > 0:
      out += [row("Total scalar accesses", n),
              row("Op per Byte", _f(_op_per_byte(
                  total, structure.word_bits[i], n)))]
  return out + ["", ""], total


def _summary_block(structure: Structure, s: dict, levels,
                   ops: int) -> list[str]:
  cycles = float(s["cycles"])
  energy = float(s["energy_total"])
  computes = float(s["computes"])
  gflops = float(np.float32(ops) / np.float32(cycles))
  out = ["Summary Stats", "-------------",
         f"GFLOPs (@1GHz): {_f(gflops)}",
         f"Utilization: {_f(float(s['utilization']) * 100.0)}%",
         f"Cycles: {cycles:.0f}",
         f"Energy: {_f(energy / 1e6)} uJ",
         f"EDP(J*cycle): {float(np.float32(cycles)) * energy / 1e12:.2e}",
         f"Area: {_f(float(s['area']) / 1e6)} mm^2"]
  if not bool(s["valid"]):
    out.append(f"Valid: False (capacity {bool(s['capacity_ok'])}, "
               f"fan-out {bool(s['fanout_ok'])}, factors "
               f"{bool(s['factors_ok'])})")
  names = [structure.compute_name] + list(structure.level_names)
  inner = [structure.compute_name] + list(structure.level_names[:-1])
  networks = [f"{o} <==> {n}" for o, n in zip(structure.level_names, inner)]
  align = max(len(n) for n in names + networks) + 1
  out += ["", f"Computes = {computes:.0f}", "fJ/Compute"]
  line = lambda name, e: f"    {name:<{align}}= {_f(e * 1000 / computes)}"
  out.append(line(structure.compute_name, float(s["compute_energy"])))
  for i, name in enumerate(structure.level_names):
    if levels[i].level_energy != 0:
      out.append(line(name, levels[i].level_energy))
  out.append(line("Total", energy))
  return out


def stats_text(structure: Structure, stats: Stats, title: str = "", *,
               spec, params, mapping, spatial_order=None,
               ert=None) -> str:
  """One mapping's statistics as Timeloop's ``stats.txt``.

  Sections and lines in Timeloop's order and format: per level ``Level i``
  / ``=== Name ===`` with SPECS, MAPPING (the level's loops) and STATS
  (cycles, bandwidth throttling, then per kept data space partition size,
  utilized capacity/instances/clusters, scalar reads/fills/updates,
  temporal reductions, address generations, energies, bandwidths),
  Networks, Operational Intensity Stats and Summary Stats (GFLOPs,
  utilization, cycles, energy, EDP, area, fJ/Compute per level).

  Args:
    structure, stats: the workload's structure and one mapping's stats.
    title: printed first (with a blank line) when given.
    spec: the workload's spec (level specs); params: its ``ArchParams``;
      mapping: the mapping evaluated (loop nests, partition sizes).
    spatial_order: per level, the spatial loops' order (see
      :func:`jaxloop.outputs.spatial_orders`).
    ert: the energy table used (vector access energies), default the
      spec's or the built-in estimates.

  A mapping that Timeloop would reject (``stats.valid`` false) gets a
  ``Valid: False (...)`` line after the area.  The summary area is the
  ART's (Timeloop 0fc43fb prints 0.00 mm^2 there: its evaluation resets
  the area it computed from the specs).
  """
  from jaxloop.outputs import level_loops, used_tables
  if ert is None:
    ert = used_tables(spec)[0]
  s = _np(stats)
  compute_cycles = float(np.prod(np.asarray(mapping.temporal, np.float64)))
  partition = partition_sizes(structure, mapping)
  levels = [_Level(structure, s, params, mapping, partition, i,
                   compute_cycles) for i in range(structure.num_levels)]
  out = [title, ""] if title else []
  out += ["Buffer and Arithmetic Levels", "----------------------------",
          "Level 0", "-------"]
  out += _arithmetic_block(structure, spec.arch.arithmetic, s, params,
                           compute_cycles)
  for i, lvl in enumerate(spec.arch.storage):
    if not levels[i].shown:
      continue
    out += [f"Level {i + 1}", "-------"]
    out += _storage_block(structure, lvl, levels[i], params, ert,
                          level_loops(structure, mapping, i, spatial_order))
  out += ["Networks", "--------"]
  block, ops = _intensity_block(structure, s, levels)
  out += block
  out += _summary_block(structure, s, levels, ops)
  return "\n".join(out) + "\n\n"
