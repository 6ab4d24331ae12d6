"""A mapped network's files: ``network.csv``, ``summary.json``,
``layers/<name>/`` (each layer's Timeloop outputs) and
``energy_breakdown.png``."""
from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Optional

import numpy as np

from jaxloop.network.mapper import LayerResult, NetworkResult

# network.csv's columns before the per-level energies.
CSV_COLUMNS = ("name", "layers", "repeat", "kind", "dims", "cycles",
               "energy_uj", "edp", "utilization", "computes", "evaluated",
               "search_s")


def layer_row(r: LayerResult, kinds: list[str]) -> dict:
  """One CSV row: a distinct layer, its repeat count and its best
  mapping's statistics for one run (per-level energies in pJ as
  ``energy_<level>_pj``); empty statistics when nothing legal was found."""
  s = r.workload.structure
  row = {"name": r.name, "layers": " ".join(r.names), "repeat": r.repeat,
         "kind": kinds[r.kind],
         "dims": " ".join(f"{n}={b}" for n, b in
                          zip(s.dim_names, s.dim_bounds)),
         "evaluated": r.search.evaluated,
         "search_s": round(float(r.search.elapsed), 3)}
  st = r.stats
  if st is None:
    return row
  row.update(cycles=int(st.cycles), energy_uj=float(st.energy_total) * 1e-6,
             edp=float(st.edp), utilization=float(st.utilization),
             computes=int(st.computes))
  for name, e in zip(s.level_names, np.asarray(st.level_energy)):
    row[f"energy_{name}_pj"] = float(e)
  row["energy_compute_pj"] = float(st.compute_energy)
  return row


def write_network(result: NetworkResult, outdir: str | os.PathLike,
                  settings: Optional[dict] = None) -> dict:
  """Writes the network's files to ``outdir`` (created); returns the
  summary dict.

  Files: ``network.csv`` (one row per distinct layer, see
  :func:`layer_row`), ``summary.json`` (network totals, each layer weighted
  by its repeat count; kinds; compile counts and times; wall times;
  ``settings``), ``layers/<name>/`` (:meth:`jaxloop.Workload.write`:
  stats, map.yaml and the inputs to re-run it with ``jaxloop model``) and
  ``energy_breakdown.png`` (energy per level of each layer, all its runs).
  """
  out = Path(outdir)
  out.mkdir(parents=True, exist_ok=True)
  rows = [layer_row(r, result.kinds) for r in result.layers]
  columns = list(CSV_COLUMNS) + [k for k in rows[0] if k.startswith(
      "energy_") and k.endswith("_pj")] if rows else list(CSV_COLUMNS)
  with open(out / "network.csv", "w", newline="") as f:
    w = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
    w.writeheader()
    w.writerows(rows)
  for r in result.layers:
    if r.stats is not None:
      r.workload.write(r.stats, out / "layers" / r.name,
                       f"jaxloop network: layer {r.name}", mapping=r.mapping)
  summary = _summary(result, settings)
  (out / "summary.json").write_text(json.dumps(summary, indent=1))
  plot_energy_breakdown(result, out / "energy_breakdown.png")
  return summary


def _summary(result: NetworkResult, settings: Optional[dict]) -> dict:
  members = {}
  for r in result.layers:
    members.setdefault(r.kind, []).extend(r.names)
  return {
      "totals": result.totals,
      "kinds": [{"kind": k, "layers": members.get(i, [])}
                for i, k in enumerate(result.kinds)],
      "compiles": {"model_programs": result.compiles,
                   "model_seconds": round(result.compile_seconds, 3),
                   "draw_programs": result.draw_compiles,
                   "draw_seconds": round(result.draw_compile_seconds, 3)},
      "seconds": {k: round(v, 3) for k, v in result.seconds.items()},
      "settings": settings or {},
  }


def plot_energy_breakdown(result: NetworkResult, path: str | os.PathLike
                          ) -> None:
  """Stacked bars: each distinct layer's energy (all its runs, uJ) by
  storage level and compute (matplotlib, no global state)."""
  from matplotlib.backends.backend_agg import FigureCanvasAgg
  from matplotlib.figure import Figure
  done = [r for r in result.layers if r.stats is not None]
  levels = list(result.layers[0].workload.structure.level_names)
  parts = np.array([[r.repeat * float(e) * 1e-6 for e in
                     list(np.asarray(r.stats.level_energy))
                     + [float(r.stats.compute_energy)]] for r in done]
                   ).reshape(len(done), len(levels) + 1)
  names = levels + ["compute"]
  fig = Figure(figsize=(max(6.0, 0.35 * len(done) + 2), 4.5))
  FigureCanvasAgg(fig)
  ax = fig.add_subplot(1, 1, 1)
  x = np.arange(len(done))
  bottom = np.zeros(len(done))
  for j, name in enumerate(names):
    if not parts[:, j].any():
      continue
    ax.bar(x, parts[:, j], bottom=bottom, label=name)
    bottom += parts[:, j]
  ax.set_xticks(x)
  ax.set_xticklabels([f"{r.name} x{r.repeat}" if r.repeat > 1 else r.name
                      for r in done], rotation=90, fontsize=7)
  ax.set_ylabel("energy (uJ, all runs of the layer)")
  ax.set_title("Energy per layer by level")
  ax.legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
