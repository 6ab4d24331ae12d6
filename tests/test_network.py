"""Whole networks (jaxloop.network): layers from problem files, folders,
globs, network YAML and ONNX; identical layers mapped once; one compiled
program per layer kind; totals weighted by repeat counts; every written
map.yaml reproduces its network.csv row; bad input named."""
import csv
import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import yaml

import jaxloop
from jaxloop import cli
from jaxloop.errors import SpecError
from jaxloop.network import load_layers, map_network
from jaxloop.network import kinds as kinds_lib
from jaxloop.network.workloads import load_workloads

EXAMPLE = Path(jaxloop.__file__).resolve().parent / "specs" / "example"
ARCH = [str(EXAMPLE / "arch.yaml"), str(EXAMPLE / "ERT.yaml")]
BUDGET = 3000


def _problem(**instance) -> dict:
  """The bundled example's conv problem with ``instance``."""
  doc = yaml.safe_load((EXAMPLE / "problem.yaml").read_text())
  doc["problem"]["instance"] = {"C": 1, "M": 1, "R": 1, "S": 1, "N": 1,
                                "P": 1, "Q": 1, **instance}
  return doc


@pytest.fixture(scope="module")
def network(tmp_path_factory):
  """A network YAML: a 3x3 conv twice (repeat 2, then once more under
  another name: one distinct layer run 3 times), a smaller 3x3 conv (same
  kind) and a 1x1 conv (another kind)."""
  root = tmp_path_factory.mktemp("net")
  shapes = {"conv3": dict(C=16, M=32, R=3, S=3, P=14, Q=14),
            "conv3_small": dict(C=8, M=16, R=3, S=3, P=7, Q=7),
            "conv1": dict(C=32, M=16, P=14, Q=14)}
  (root / "layers").mkdir()
  for name, inst in shapes.items():
    (root / "layers" / f"{name}.yaml").write_text(
        yaml.safe_dump(_problem(**inst)))
  (root / "copy").mkdir()
  (root / "copy" / "conv3.yaml").write_text(
      yaml.safe_dump(_problem(**shapes["conv3"])))
  net = {"network": {"layers": [
      {"file": "layers/conv3.yaml", "repeat": 2},
      {"file": "layers/conv3_small.yaml"},
      {"file": "copy/conv3.yaml", "name": "again"},
      {"file": "layers/conv1.yaml", "repeat": 3}]}}
  path = root / "net.yaml"
  path.write_text(yaml.safe_dump(net))
  return path


@pytest.fixture(scope="module")
def mapped(network):
  return map_network(ARCH, [network], budget_per_layer=BUDGET, seed=1)


def test_network_yaml_layers(network):
  layers = load_layers([network])
  assert [(l.name, l.repeat) for l in layers] == [
      ("conv3", 2), ("conv3_small", 1), ("again", 1), ("conv1", 3)]
  assert Path(layers[2].path).parent.name == "copy"


def test_folder_and_glob(network):
  folder = network.parent / "layers"
  by_folder = load_layers([folder])
  by_glob = load_layers([str(folder / "conv*.yaml")])
  assert [l.name for l in by_folder] == ["conv1", "conv3", "conv3_small"]
  assert by_glob == by_folder
  both = load_layers([folder / "conv1.yaml", folder / "conv1.yaml"])
  assert [l.name for l in both] == ["conv1", "conv1-2"]


def test_identical_layers_mapped_once_and_kinds_compile_once(mapped):
  assert [r.names for r in mapped.layers] == [
      ("conv3", "again"), ("conv3_small",), ("conv1",)]
  assert [r.repeat for r in mapped.layers] == [3, 1, 3]
  assert len(mapped.kinds) == 2
  assert mapped.layers[0].kind == mapped.layers[1].kind
  assert mapped.layers[2].kind != mapped.layers[0].kind
  # Per kind: one model program (the search's batch with every statistic,
  # which also gives the best mapping's) and one mapspace draw.
  assert mapped.compiles == len(mapped.kinds) == 2
  assert mapped.draw_compiles == len(mapped.kinds)
  assert all(r.search.evaluated == BUDGET and r.stats.valid
             for r in mapped.layers)


def test_totals_are_weighted_sums(mapped):
  t = mapped.totals
  layers = mapped.layers
  assert t["energy_pj"] == pytest.approx(sum(
      r.repeat * float(r.stats.energy_total) for r in layers), rel=1e-12)
  assert t["cycles"] == sum(r.repeat * float(r.stats.cycles) for r in layers)
  assert t["layers"] == 4 and t["layer_runs"] == 7
  assert sum(t["level_energy_pj"].values()) + sum(
      r.repeat * float(r.stats.compute_energy) for r in layers) == \
      pytest.approx(t["energy_pj"], rel=1e-9)
  assert t["edp"] == pytest.approx(t["energy_pj"] * 1e-12 * t["cycles"])


def test_kind_program_gives_the_layers_own_numbers(mapped):
  """The shared program (the kind's upper bounds, the layer's bounds as
  data) and the layer's own program agree on every field of every legal
  mapping, and on which mappings are legal."""
  wl = mapped.layers[1].workload              # the smaller 3x3 conv
  assert wl.kind.dim_bounds != wl.structure.dim_bounds
  m = wl.mapspace.sample(np.random.default_rng(3), 256)
  shared = wl.evaluate(m)
  own = dataclasses.replace(wl, kind=None).evaluate(m)
  ok = own.valid
  assert ok.any() and np.array_equal(shared.valid, ok)
  for f in dataclasses.fields(own):
    assert np.array_equal(np.asarray(getattr(shared, f.name))[ok],
                          np.asarray(getattr(own, f.name))[ok]), f.name


def test_cli_writes_rows_that_the_written_files_reproduce(network, mapped,
                                                         tmp_path, capsys):
  out = tmp_path / "out"
  assert cli.main(["network", *ARCH, "--layers", str(network), "-o",
                   str(out), "--budget-per-layer", str(BUDGET),
                   "--seed", "1"]) == 0
  assert "3 distinct, 2 kinds" in capsys.readouterr().out
  with open(out / "network.csv", newline="") as f:
    rows = list(csv.DictReader(f))
  assert [r["name"] for r in rows] == ["conv3", "conv3_small", "conv1"]
  summary = json.loads((out / "summary.json").read_text())
  assert summary["totals"]["energy_pj"] == pytest.approx(
      mapped.totals["energy_pj"])
  assert (out / "energy_breakdown.png").stat().st_size > 1000
  for row in rows:
    d = out / "layers" / row["name"]
    wl = jaxloop.load(*(d / f for f in ("parsed-processed-input.yaml",
                                        "map.yaml", "ERT.yaml", "ART.yaml")))
    st = wl.evaluate()
    assert bool(st.valid)
    assert int(st.cycles) == int(row["cycles"])
    assert float(st.energy_total) * 1e-6 == pytest.approx(
        float(row["energy_uj"]), rel=1e-12)
    level = {n: float(row[f"energy_{n}_pj"])
             for n in wl.structure.level_names}
    assert [level[n] for n in wl.structure.level_names] == pytest.approx(
        list(np.asarray(st.level_energy)), rel=1e-12)


def test_kind_key_separates_strides_and_unit_dims():
  wl = jaxloop.load(*jaxloop.example_files())
  s = wl.structure
  bigger = dataclasses.replace(s, dim_bounds=tuple(   # channels only:
      b * 2 if n in ("C", "M") else b                  # same window gcds
      for n, b in zip(s.dim_names, s.dim_bounds)))
  assert kinds_lib.kind_key(s) == kinds_lib.kind_key(bigger)
  unit = dataclasses.replace(s, dim_bounds=tuple(
      1 if n in ("R", "S") else b for n, b in zip(s.dim_names,
                                                   s.dim_bounds)))
  assert kinds_lib.kind_key(unit) != kinds_lib.kind_key(s)
  kind = kinds_lib.kind_structure([s, bigger])
  assert kind.dim_bounds == bigger.dim_bounds
  with pytest.raises(ValueError):
    kinds_lib.kind_structure([s, unit])
  wider = dataclasses.replace(s, dim_bounds=tuple(     # R 3 -> 6, P 14:
      6 if n == "R" else b for n, b in zip(s.dim_names, s.dim_bounds)))
  assert kinds_lib.window_gcds(wider) == (2, 1)        # gcd(6, 14) = 2
  assert kinds_lib.kind_key(wider) != kinds_lib.kind_key(s)


def test_onnx_conv_grouped_depthwise_gemm_matmul(tmp_path):
  onnx = pytest.importorskip("onnx")
  from onnx import TensorProto, helper
  f32 = TensorProto.FLOAT

  def weight(name, dims):
    return helper.make_tensor(name, f32, dims,
                              np.zeros(int(np.prod(dims)), np.float32))

  nodes = [
      helper.make_node("Conv", ["x", "w1"], ["y1"], name="grouped",
                       group=2, strides=[2, 2], pads=[1, 1, 1, 1]),
      helper.make_node("Conv", ["y1", "w2"], ["y2"], name="depthwise",
                       group=8, pads=[1, 1, 1, 1]),
      helper.make_node("Flatten", ["y2"], ["f"]),
      helper.make_node("Gemm", ["f", "w3"], ["g"], name="fc", transB=1),
      helper.make_node("MatMul", ["a", "b"], ["c"], name="attn")]
  graph = helper.make_graph(
      nodes, "tiny",
      [helper.make_tensor_value_info("x", f32, [1, 4, 16, 16]),
       helper.make_tensor_value_info("a", f32, [2, 5, 6]),
       helper.make_tensor_value_info("b", f32, [2, 6, 7])],
      [helper.make_tensor_value_info("g", f32, None),
       helper.make_tensor_value_info("c", f32, None)],
      [weight("w1", [8, 2, 3, 3]), weight("w2", [8, 1, 3, 3]),
       weight("w3", [10, 512])])
  path = tmp_path / "tiny.onnx"
  onnx.save(helper.make_model(graph), str(path))
  layers = load_layers([path])
  inst = {l.name: {k: v for k, v in l.problem["instance"].items() if v != 1}
          for l in layers}
  assert inst == {
      "grouped": dict(C=2, M=4, G=2, R=3, S=3, P=8, Q=8, Hstride=2,
                      Wstride=2),
      "depthwise": dict(G=8, R=3, S=3, P=8, Q=8),
      "fc": dict(C=512, M=10),
      "attn": dict(N=2, C=6, M=7, P=5)}
  # The generated problems load with an architecture.
  wl = load_workloads(ARCH, layers[3:])[0]
  assert wl.structure.dim_bounds == (6, 7, 1, 1, 2, 5, 1, 1)


@pytest.mark.parametrize("entry, key", [
    ({"file": "missing.yaml"}, "network.layers[0].file"),
    ({"file": "layers/conv1.yaml", "repeat": 0}, "network.layers[0].repeat"),
    ({"file": "layers/conv1.yaml", "repeat": "two"},
     "network.layers[0].repeat"),
    ({"file": "layers/conv1.yaml", "times": 2}, "network.layers[0].times"),
    ({"repeat": 2}, "network.layers[0]")])
def test_bad_network_entries_are_named(network, tmp_path, entry, key):
  path = network.parent / f"bad{abs(hash(key)) % 1000}.yaml"
  path.write_text(yaml.safe_dump({"network": {"layers": [entry]}}))
  with pytest.raises(SpecError) as e:
    load_layers([path])
  assert e.value.path == key and str(path) in e.value.where


def test_cli_bad_input_is_one_line(tmp_path, capsys):
  code = cli.main(["network", *ARCH, "--layers", str(tmp_path / "no.yaml"),
                   "-o", str(tmp_path / "o")])
  err = capsys.readouterr().err.strip()
  assert code == 2 and "does not exist" in err and "Traceback" not in err
  assert len(err.splitlines()) <= 2      # the message and its hint
  with pytest.raises(SpecError, match="no file matches"):
    load_layers([str(tmp_path / "*.yaml")])
