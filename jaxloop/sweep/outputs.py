"""What ``jaxloop sweep`` writes: tables (CSV and Parquet), the Pareto
front, plots (matplotlib ``Figure`` objects, no pyplot state) and a
summary.

Files in the output folder:

* ``sweep.csv`` / ``sweep.parquet``: one row per point (axis values,
  network energy, cycles, EDP, area, per-level energy);
* ``layers.csv``: one row per (point, distinct layer);
* ``pareto.csv``: the points on the energy / cycles / area front;
* ``pareto.png``: energy against cycles, coloured by area, front marked;
* ``breakdown.png``: each point's energy split over the levels;
* ``summary.json``: settings, counts, compiles, timings.
"""
from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Sequence

from jaxloop.sweep.pareto import pareto_rows


def columns(rows: Sequence[dict]) -> list[str]:
  """Every key of the rows, in order of first appearance."""
  out: dict = {}
  for r in rows:
    out.update(dict.fromkeys(r))
  return list(out)


def write_csv(rows: Sequence[dict], path: Path) -> None:
  cols = columns(rows)
  with open(path, "w", newline="") as f:
    w = csv.DictWriter(f, fieldnames=cols, restval="")
    w.writeheader()
    for r in rows:
      w.writerow({k: (repr(v) if isinstance(v, float) else v)
                  for k, v in r.items()})


def write_parquet(rows: Sequence[dict], path: Path) -> None:
  """The rows as a Parquet table (pyarrow; a column mixing types is
  written as strings)."""
  import pyarrow as pa
  import pyarrow.parquet as pq
  data = {}
  for c in columns(rows):
    values = [r.get(c) for r in rows]
    kinds = {type(v) for v in values if v is not None}
    if len(kinds) > 1 and not kinds <= {int, float}:
      values = [None if v is None else str(v) for v in values]
    data[c] = values
  pq.write_table(pa.table(data), path)


def _level_keys(rows) -> list[str]:
  return [c for c in columns(rows) if c.startswith("energy_pj.")]


def pareto_figure(rows: Sequence[dict], front: Sequence[dict]):
  """Energy (uJ) against cycles of every valid point, coloured by area
  (mm^2); the Pareto front's points ringed."""
  from matplotlib.figure import Figure
  ok = [r for r in rows if r["valid"]]
  fig = Figure(figsize=(6.4, 4.8), layout="constrained")
  ax = fig.add_subplot()
  sc = ax.scatter([r["cycles"] for r in ok],
                  [r["energy_pj"] * 1e-6 for r in ok],
                  c=[r["area_um2"] * 1e-6 for r in ok], cmap="viridis", s=24)
  ax.scatter([r["cycles"] for r in front],
             [r["energy_pj"] * 1e-6 for r in front], s=90,
             facecolors="none", edgecolors="red", label="Pareto front")
  fig.colorbar(sc, ax=ax, label="area (mm$^2$)")
  ax.set_xlabel("cycles")
  ax.set_ylabel("energy (uJ)")
  ax.set_xscale("log")
  ax.set_yscale("log")
  ax.legend()
  return fig


def breakdown_figure(rows: Sequence[dict], label_keys: Sequence[str]):
  """Stacked bars: each point's energy (uJ) per level."""
  from matplotlib.figure import Figure
  levels = _level_keys(rows)
  width = max(6.4, 0.25 * len(rows) + 2)
  fig = Figure(figsize=(width, 4.8), layout="constrained")
  ax = fig.add_subplot()
  x = range(len(rows))
  bottom = [0.0] * len(rows)
  for key in levels:
    h = [r.get(key, 0.0) * 1e-6 for r in rows]
    if not any(h):
      continue
    ax.bar(x, h, bottom=bottom, label=key.split(".", 1)[1])
    bottom = [b + v for b, v in zip(bottom, h)]
  labels = [" ".join(str(r.get(k)) for k in label_keys) for r in rows]
  ax.set_xticks(list(x), labels, rotation=90, fontsize=7)
  ax.set_ylabel("energy (uJ)")
  ax.legend(fontsize=7)
  return fig


def write_outputs(result, outdir, axis_names: Sequence[str],
                  settings: dict) -> dict:
  """Writes every file listed in the module docstring; returns the
  summary dict."""
  out = Path(outdir)
  out.mkdir(parents=True, exist_ok=True)
  write_csv(result.points, out / "sweep.csv")
  write_parquet(result.points, out / "sweep.parquet")
  write_csv(result.layers, out / "layers.csv")
  front = pareto_rows(result.points)
  write_csv(front or [{"id": None}], out / "pareto.csv")
  pareto_figure(result.points, front).savefig(out / "pareto.png", dpi=110)
  breakdown_figure(result.points, axis_names).savefig(out / "breakdown.png",
                                                      dpi=110)
  summary = {**result.info, "settings": settings,
             "valid_points": sum(r["valid"] for r in result.points),
             "pareto_ids": [r["id"] for r in front]}
  (out / "summary.json").write_text(json.dumps(summary, indent=1))
  return summary
