"""Built-in energy/area estimates (jaxloop.estimate, issue #6)."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import reference_cases
from jaxloop import api
from jaxloop.errors import SpecError
from jaxloop.estimate import component, estimate_tables, tables_yaml
from jaxloop.estimate import technology as tech
from jaxloop.spec import load_spec
from jaxloop.validate import case_files

CASES = reference_cases()


def _inputs(root, case):
  return case_files(root, case)[:-2]      # without the ERT and ART


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_every_reference_architecture(reference, case):
  spec = load_spec(*_inputs(reference, case))
  ert, art = estimate_tables(spec)
  assert ert.source.startswith("jaxloop.estimate")
  names = {n for n, _ in ert.entries}
  for lvl in spec.arch.storage:
    if lvl.is_dummy:
      continue
    assert lvl.ert_name in names
    acts = {a.action: a.energy for a in ert.lookup(lvl.ert_name)}
    assert set(acts) == {"read", "write", "update", "leak"}
    for action in ("read", "write", "update"):
      assert math.isfinite(acts[action]) and acts[action] > 0, (lvl.name,
                                                                action)
    assert math.isfinite(acts["leak"]) and acts["leak"] >= 0
  comp = {a.action: a.energy for a in ert.lookup(spec.arch.arithmetic.ert_name)}
  assert comp["compute"] > 0 and math.isfinite(comp["compute"])
  assert all(math.isfinite(a) and a >= 0 for _, a in art.entries)


def test_model_without_ert_uses_estimates(reference):
  case = next(c for c in CASES if c["name"].startswith("tutorial:03"))
  wl = api.load(*_inputs(reference, case))
  stats = wl.evaluate()
  assert np.isfinite(stats.energy_total) and stats.energy_total > 0


def test_exact_path_unchanged(reference):
  case = next(c for c in CASES if c["name"].startswith("tutorial:03"))
  from jaxloop.validate import run_case
  _, bad = run_case(reference, case)
  assert bad == []


def test_written_tables_load_back(reference, tmp_path):
  case = CASES[0]
  spec = load_spec(*_inputs(reference, case))
  ert, art = estimate_tables(spec)
  e_text, a_text = tables_yaml(ert, art)
  (tmp_path / "ERT.yaml").write_text(e_text)
  (tmp_path / "ART.yaml").write_text(a_text)
  again = load_spec(*_inputs(reference, case), tmp_path / "ERT.yaml",
                    tmp_path / "ART.yaml")
  for (n1, a1), (n2, a2) in zip(ert.entries, again.ert.entries):
    assert n1 == n2
    assert [a.energy for a in a1] == pytest.approx([a.energy for a in a2], rel=1e-8)


def test_cli_ert(reference, tmp_path, capsys):
  from jaxloop.cli import main
  case = CASES[0]
  assert main(["ert", *map(str, _inputs(reference, case)), "-o",
               str(tmp_path)]) == 0
  assert (tmp_path / "ERT.yaml").is_file() and (tmp_path / "ART.yaml").is_file()
  assert "wrote" in capsys.readouterr().out


@pytest.mark.parametrize("cls", ["SRAM", "regfile", "smartbuffer_SRAM",
                                 "smartbuffer_RF", "storage"])
def test_monotone_in_size(cls):
  def read(depth, width):
    e, _ = component(cls, {"depth": depth, "width": width}, "45nm")
    return float(e["read"])
  depths = [16, 64, 256, 1024, 8192]
  by_depth = [read(d, 32) for d in depths]
  assert all(b > a for a, b in zip(by_depth, by_depth[1:]))
  by_width = [read(256, w) for w in (8, 16, 64, 256)]
  assert all(b > a for a, b in zip(by_width, by_width[1:]))
  _, small = component(cls, {"depth": 64, "width": 32}, "45nm")
  _, big = component(cls, {"depth": 4096, "width": 32}, "45nm")
  assert float(big) > float(small)


@pytest.mark.parametrize("cls", ["SRAM", "regfile", "smartbuffer_SRAM",
                                 "smartbuffer_RF", "storage", "DRAM"])
def test_gradients_finite(cls):
  def f(x):
    e, area = component(cls, {"depth": x[0], "width": x[1]}, "32nm")
    return e["read"] + e["write"] + e["leak"] + 1e-3 * area
  g = jax.grad(f)(jnp.asarray([512.0, 64.0]))
  assert np.all(np.isfinite(np.asarray(g)))
  assert float(g[1]) > 0


def test_compute_gradients_and_widths():
  def f(w):
    e, _ = component("intmac", {"multiplier_width": w, "adder_width": 2 * w})
    return e["compute"]
  assert float(jax.grad(f)(8.0)) > 0
  assert float(f(16.0)) > float(f(8.0))
  e8, _ = component("fpmac", {"multiplier_width": 16, "adder_width": 16})
  e32, _ = component("fpmac", {"multiplier_width": 32, "adder_width": 32})
  assert float(e32["compute"]) > float(e8["compute"])


def test_published_anchor_points():
  # Horowitz ISSCC 2014, 45 nm.
  e, _ = component("SRAM", {"depth": 1024, "width": 64}, "45nm")
  assert float(e["read"]) == pytest.approx(10.0, rel=1e-6)
  e, _ = component("intmac", {"multiplier_width": 8, "adder_width": 8})
  assert float(e["compute"]) == pytest.approx(0.23, rel=1e-6)
  e, _ = component("DRAM", {"width": 64, "type": "HBM2"})
  assert float(e["read"]) == pytest.approx(64 * 3.9)


def test_technology_scaling_monotone():
  nodes = [7, 16, 22, 28, 32, 40, 45, 65]
  ef = [float(tech.energy_factor(n)) for n in nodes]
  af = [float(tech.area_factor(n)) for n in nodes]
  assert all(b > a for a, b in zip(ef, ef[1:]))
  assert all(b > a for a, b in zip(af, af[1:]))
  assert float(tech.energy_factor(45)) == pytest.approx(1.0)
  assert tech.parse_node("32nm") == 32.0 and tech.parse_node("SET ME") is None


def test_unknown_class_names_component_and_known_classes():
  with pytest.raises(SpecError) as e:
    component("flux_capacitor", {"width": 8}, name="GlobalBuffer")
  msg = str(e.value)
  assert "GlobalBuffer" in msg and "flux_capacitor" in msg
  assert "SRAM" in msg and "intmac" in msg


def test_missing_attribute_names_component_and_attribute():
  with pytest.raises(SpecError) as e:
    component("SRAM", {"width": 64}, name="GlobalBuffer")
  assert "GlobalBuffer" in str(e.value) and "'depth'" in str(e.value)


def test_compound_definition_followed():
  from jaxloop.estimate.compound import parse_definitions
  defs = parse_definitions({"classes": [{
      "name": "twin_sram",
      "attributes": {"technology": "must_specify", "width": "must_specify",
                     "depth": "must_specify", "half": "depth / 2"},
      "subcomponents": [{"name": "bank[0..1]", "class": "SRAM",
                         "attributes": {"width": "width", "depth": "half"}}],
      "actions": [{"name": "read", "subcomponents": [
          {"name": "bank[0]", "actions": [{"name": "read",
                                           "energy_scale": 1.5}]}]}],
  }]})
  e, area = component("twin_sram", {"width": 64, "depth": 2048},
                      definitions=defs)
  bank, bank_area = component("SRAM", {"width": 64, "depth": 1024})
  assert float(e["read"]) == pytest.approx(1.5 * float(bank["read"]))
  assert float(area) == pytest.approx(2 * float(bank_area))
  with pytest.raises(SpecError) as err:
    component("twin_sram", {"width": 64}, definitions=defs, name="Buf")
  assert "Buf" in str(err.value) and "'depth'" in str(err.value)
