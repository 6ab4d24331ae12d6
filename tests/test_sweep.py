"""jaxloop.sweep: architecture points batched through one program, their
searches, the Pareto front, the command line and a 2-process sweep.

The bundled example's architecture and problem (no ERT: energies and
areas come from the built-in estimator, so a buffer's depth changes its
capacity, energies and area)."""
import csv
import os
import socket
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from jaxloop.cli import main
from jaxloop.errors import SpecError
from jaxloop.sweep import SearchSettings, batched, make_points, parse_grid
from jaxloop.sweep.arch import point_workload
from jaxloop.sweep.layers import Layer
from jaxloop.sweep.pareto import pareto_mask, pareto_rows
from jaxloop.sweep.run import run_sweep
from jaxloop.sweep.search import search_points

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "jaxloop" / "specs" / "example"
ARCH = [str(EXAMPLE / "arch.yaml"), str(EXAMPLE / "problem.yaml")]
SMALL = SearchSettings(budget=512, children=256, points_per_call=4)


def _points(glb, rf):
  return make_points([parse_grid(f"GlobalBuffer.depth={glb}"),
                      parse_grid(f"RegisterFile.depth={rf}")])


def test_batched_params_equal_per_point_evaluation():
  points = _points("512,8192", "16,64")
  wls = [point_workload(ARCH, None, p) for p in points]
  assert len({w.structure for w in wls}) == 1
  assert len({float(w.params.read_energy[2]) for w in wls}) == 2
  maps, stats = search_points(wls[0].mapspace, [w.params for w in wls],
                              range(4), 0, SMALL, (jax.devices()[0],))
  for i, wl in enumerate(wls):
    alone = wl.evaluate(jax.tree.map(lambda x: x[i], maps))
    assert alone.energy_total == stats.energy_total[i]
    assert alone.cycles == stats.cycles[i]
    assert alone.area == stats.area[i]
    np.testing.assert_array_equal(alone.level_energy, stats.level_energy[i])
  assert stats.valid.all()


def test_new_points_do_not_recompile():
  layers = [Layer("problem", None)]
  first = run_sweep(ARCH, _points("1024,4096", "32,64"), layers, SMALL,
                    devices=[jax.devices()[0]])
  before = batched.compiles()
  again = run_sweep(ARCH, _points("2048,512,16384", "16,128"), layers,
                    SMALL, devices=[jax.devices()[0]])
  assert batched.compiles() == before
  assert len(first.points) == 4 and len(again.points) == 6
  assert {r["GlobalBuffer.depth"] for r in again.points} == {512, 2048, 16384}


def test_pareto_front_of_a_hand_made_table():
  rows = [
      {"id": 0, "energy_pj": 1.0, "cycles": 9.0, "area_um2": 5.0,
       "valid": True},
      {"id": 1, "energy_pj": 2.0, "cycles": 4.0, "area_um2": 5.0,
       "valid": True},
      {"id": 2, "energy_pj": 2.0, "cycles": 5.0, "area_um2": 5.0,
       "valid": True},                 # dominated by 1
      {"id": 3, "energy_pj": 3.0, "cycles": 9.0, "area_um2": 1.0,
       "valid": True},                 # smallest area
      {"id": 4, "energy_pj": 0.5, "cycles": 1.0, "area_um2": 0.5,
       "valid": False},                # would dominate all, but invalid
      {"id": 5, "energy_pj": 1.0, "cycles": 9.0, "area_um2": 5.0,
       "valid": True},                 # equal to 0: both kept
  ]
  assert [r["id"] for r in pareto_rows(rows)] == [0, 5, 1, 3]
  v = np.array([[1.0, 1.0], [np.inf, 0.0], [2.0, 0.5], [2.0, 2.0]])
  np.testing.assert_array_equal(pareto_mask(v), [True, False, True, False])


def _read(path):
  with open(path) as f:
    return list(csv.DictReader(f))


def test_cli_writes_table_front_and_plots(tmp_path, capsys):
  out = tmp_path / "sw"
  assert main(["sweep", *ARCH, "--grid", "GlobalBuffer.depth=1024,8192",
               "--grid", "RegisterFile.depth=16,64", "--budget", "512",
               "--points-per-call", "4", "--quiet", "-o", str(out)]) == 0
  rows = _read(out / "sweep.csv")
  assert [int(r["id"]) for r in rows] == [0, 1, 2, 3]
  assert {"energy_pj", "cycles", "edp", "area_um2",
          "energy_pj.GlobalBuffer"} <= set(rows[0])
  import pyarrow.parquet as pq
  table = pq.read_table(out / "sweep.parquet").to_pylist()
  assert [float(r["edp"]) for r in rows] == [r["edp"] for r in table]
  front = {int(r["id"]) for r in _read(out / "pareto.csv")}
  assert front and front <= {0, 1, 2, 3}
  for png in ("pareto.png", "breakdown.png"):
    assert (out / png).read_bytes()[:4] == b"\x89PNG"
  assert "4 points x 1 layers" in capsys.readouterr().out


@pytest.mark.parametrize("args, message", [
    (["--grid", "GlobalBuffer.depth"], "expected NAME=VALUES"),
    (["--grid", "GlobalBuffer.depth=1,,2"], "empty value"),
    (["--grid", "Nowhere.depth=1,2"], "no component or container 'Nowhere'"),
    (["--range", "GlobalBuffer.depth=10:1"], "LO < HI"),
    (["--range", "GlobalBuffer.depth=1:10"], "is a range; a grid needs"),
])
def test_bad_axes_are_one_line_errors(tmp_path, capsys, args, message):
  assert main(["sweep", *ARCH, *args, "--budget", "64", "--quiet", "-o",
               str(tmp_path)]) == 2
  err = capsys.readouterr().err
  assert message in err and "Traceback" not in err


def test_grid_random_and_lhs_points():
  axes = [parse_grid("a=1,2,3"), parse_grid("b=x,y")]
  assert len(make_points(axes)) == 6
  from jaxloop.sweep.points import parse_range
  r = parse_range("c=16:4096:log")
  pts = make_points([r], lhs=8)
  strata = sorted(int(8 * np.log(p["c"] / 16) / np.log(4096 / 16))
                  for p in pts)
  assert strata == list(range(8)) or max(np.diff(strata)) <= 1
  assert all(16 <= p["c"] <= 4096 and isinstance(p["c"], int) for p in pts)
  with pytest.raises(SpecError):
    make_points(axes, random=2, lhs=2)


def _free_port():
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def test_two_process_sweep_equals_one_process(tmp_path):
  args = [*ARCH, "--grid", "GlobalBuffer.depth=512,2048,8192",
          "--grid", "RegisterFile.depth=16,64", "--budget", "256",
          "--points-per-call", "2", "--quiet"]
  env = dict(os.environ, JAXLOOP_CPU_DEVICES="1", JAXLOOP_NO_REEXEC="1",
             PYTHONPATH=str(ROOT))
  cmd = [sys.executable, "-m", "jaxloop", "sweep"]
  port = _free_port()
  procs = [subprocess.Popen(
      cmd + args + ["-o", str(tmp_path / "two"), "--coordinator",
                    f"127.0.0.1:{port}", "--num-processes", "2",
                    "--process-id", str(i)], env=env,
      stdout=subprocess.PIPE, stderr=subprocess.PIPE) for i in range(2)]
  one = subprocess.run(cmd + args + ["-o", str(tmp_path / "one")], env=env,
                       capture_output=True, timeout=300)
  outs = [p.communicate(timeout=300) for p in procs]
  assert one.returncode == 0, one.stderr.decode()[-2000:]
  for p, (_, err) in zip(procs, outs):
    assert p.returncode == 0, err.decode()[-2000:]
  assert (tmp_path / "one" / "sweep.csv").read_text() == \
      (tmp_path / "two" / "sweep.csv").read_text()
  assert (tmp_path / "one" / "layers.csv").read_text() == \
      (tmp_path / "two" / "layers.csv").read_text()
  assert len(_read(tmp_path / "two" / "sweep.csv")) == 6


def test_codesign_knobs_reproduce_the_files_and_have_gradients():
  import jax.numpy as jnp
  from jaxloop.sweep.codesign import knob_params, make_knobs
  wl = point_workload(ARCH, None, {})
  knobs = make_knobs(wl, {"GlobalBuffer.depth": (256, 65536),
                          "GlobalBuffer.read_bandwidth": (1, 64)})
  assert [k.legal(v) for k, v in zip(knobs, (5000.0, 7.6))] == [4096, 8]
  fn = knob_params(wl, knobs)
  with jax.enable_x64(True):
    theta = jnp.log(jnp.asarray([8192.0, 16.0]))
    p = fn(theta)
    grad = jax.grad(lambda t: fn(t).read_energy[2] + fn(t).area[2])(theta)
  for name in ("read_energy", "fill_energy", "update_energy", "leak_energy",
               "capacity", "read_bandwidth"):
    np.testing.assert_allclose(getattr(p, name), getattr(wl.params, name),
                               rtol=1e-12)
  np.testing.assert_allclose(p.area, wl.params.area, rtol=1e-6)  # ART: f32
  assert float(grad[0]) > 0 and float(grad[1]) == 0
  with pytest.raises(SpecError, match="not COMPONENT"):
    make_knobs(wl, {"GlobalBuffer.width": (8, 64)})
