"""Research kit: features, Parquet datasets (schema, exact re-evaluation,
bounded row groups, samplers, splits, CLI errors) and flax surrogates
(training, checkpoints)."""
import json

import jax
import numpy as np
import pyarrow.parquet as pq
import pytest

import jaxloop
from jaxloop.cli import main
from jaxloop.errors import SpecError
from jaxloop.research import columns, dataset, features

CHUNK = 1024


@pytest.fixture(scope="module")
def workload():
  return jaxloop.load(*jaxloop.example_files())


@pytest.fixture(scope="module")
def written(workload, tmp_path_factory):
  out = tmp_path_factory.mktemp("data")
  info = dataset.write_dataset(workload, out, count=2 * CHUNK + 300,
                               seed=3, chunk=CHUNK, arch="example",
                               layer="conv")
  return out, info


def test_features_have_one_name_per_column(workload):
  layer, arch = features.workload_features(workload)
  assert layer.shape == (len(features.layer_feature_names()),)
  assert arch.shape == (len(features.arch_feature_names()),)
  m = workload.mapspace.sample(np.random.default_rng(0), 4)
  enc = jax.jit(features.encode_mapping)(m)
  assert enc.shape == (4, features.mapping_width())
  assert len(features.mapping_feature_names()) == features.mapping_width()
  names = features.mapping_feature_names()
  col = names.index("log2_temporal/l1/d2")
  np.testing.assert_allclose(enc[:, col], np.log2(m.temporal[:, 1, 2]))
  # Position of dim d at level l inverts Timeloop's permutation.
  pos = np.asarray(enc[:, names.index("order_position/l1/d0")])
  assert all(m.order[b, 1, int(pos[b])] == 0 for b in range(4))


def test_features_refuse_structures_beyond_the_maxima(workload):
  import dataclasses
  s = workload.structure
  big = dataclasses.replace(
      s, level_names=s.level_names * 4, instances=s.instances * 4)
  with pytest.raises(SpecError, match="MAX_LEVELS"):
    features.check_fits(big)


def test_dataset_schema_columns(workload, written):
  out, info = written
  table, meta = dataset.read_dataset(info.path)
  layout = columns.layout_of(workload.mapspace)
  L = workload.structure.num_levels
  expected = (["row", "arch", "layer"] + layout.mapping_names()
              + ["valid", "energy_pj", "cycles", "edp"]
              + [f"{n}/l{l}" for n in columns.LEVEL_STATS for l in range(L)])
  assert table.schema.names == expected
  assert table.num_rows == info.rows == 2 * CHUNK + 300
  np.testing.assert_array_equal(table.column("row").to_numpy(),
                                np.arange(info.rows))
  assert set(table.column("arch").to_pylist()) == {"example"}
  assert meta["levels"] == L and meta["sampler"] == "uniform"
  manifest = dataset.read_manifest(out)
  entry, = manifest["files"]
  assert entry["file"] == info.file and entry["rows"] == info.rows
  assert len(entry["arch_features"]) == len(manifest["feature_names"]["arch"])


def test_rows_are_written_in_bounded_row_groups(written):
  _, info = written
  md = pq.ParquetFile(info.path).metadata
  sizes = [md.row_group(i).num_rows for i in range(md.num_row_groups)]
  assert sizes == [CHUNK, CHUNK, 300]


def test_sampled_rows_reevaluate_exactly(workload, written):
  _, info = written
  table, meta = dataset.read_dataset(info.path)
  rows = np.random.default_rng(1).choice(table.num_rows, 64, replace=False)
  table = table.take(rows)
  stats = workload.evaluate(dataset.table_mapping(table, meta))
  col = lambda n: table.column(n).to_numpy(zero_copy_only=False)
  np.testing.assert_array_equal(col("valid"), stats.valid)
  np.testing.assert_array_equal(col("cycles"), stats.cycles)
  np.testing.assert_allclose(col("energy_pj"), stats.energy_total,
                             rtol=1e-13)
  np.testing.assert_allclose(col("edp"), stats.edp, rtol=1e-13)
  for name, field in (("level_reads", "reads"), ("level_fills", "fills"),
                      ("level_updates", "updates")):
    np.testing.assert_array_equal(dataset.level_stats(table, meta, name),
                                  getattr(stats, field).sum(-1))
  np.testing.assert_allclose(
      dataset.level_stats(table, meta, "level_energy_pj"),
      stats.level_energy, rtol=1e-13)
  assert 0 < col("valid").sum() < len(rows)    # both kinds are present


def test_biased_sampler_rows_are_tournament_winners(workload, tmp_path):
  # Row r of a biased chunk of n rows won among draws r + j * n of the
  # uniform stream's chunk of 8 * n (here CHUNK: the fixture's program).
  n = CHUNK // dataset.BIASED_DRAWS
  biased = dataset.write_dataset(workload, tmp_path, count=n, seed=5,
                                 chunk=n, layer="b", sampler="biased")
  cands = dataset.write_dataset(workload, tmp_path, count=CHUNK, seed=5,
                                chunk=CHUNK, layer="c")
  b, meta = dataset.read_dataset(biased.path)
  c, _ = dataset.read_dataset(cands.path)
  edp = lambda t: np.where(t.column("valid").to_numpy(zero_copy_only=False),
                           t.column("edp").to_numpy(), np.inf)
  groups = edp(c).reshape(dataset.BIASED_DRAWS, n)
  np.testing.assert_array_equal(edp(b), groups.min(axis=0))
  first = groups[0]                    # n uniform draws
  assert biased.valid >= np.isfinite(first).sum()
  assert np.median(edp(b)) < np.median(first)
  assert meta["sampler"] == "biased"
  assert len(dataset.read_manifest(tmp_path)["files"]) == 2


def test_holdout_split(written):
  out, _ = written
  manifest = dataset.read_manifest(out)
  train, test = dataset.holdout_split(manifest, "layer", ["conv"])
  assert (train, [e["file"] for e in test]) == ([], [manifest["files"][0][
      "file"]])
  with pytest.raises(SpecError, match="not in the dataset"):
    dataset.holdout_split(manifest, "arch", ["nope"])


def test_read_dataset_refuses_other_parquet(tmp_path):
  import pyarrow as pa
  pq.write_table(pa.table({"a": [1]}), tmp_path / "x.parquet")
  with pytest.raises(SpecError, match="not a jaxloop dataset"):
    dataset.read_dataset(tmp_path / "x.parquet")


@pytest.mark.parametrize("argv, says", [
    (["--count", "0"], "--count must be at least 1"),
    (["--count", "5", "--sampler", "best"], "unknown sampler 'best'"),
    (["--count", "5", "--compression", "rar"], "unknown compression"),
])
def test_dataset_cli_bad_input(tmp_path, capsys, argv, says):
  files = jaxloop.example_files()
  assert main(["dataset", *files, "-o", str(tmp_path), *argv]) == 2
  err = capsys.readouterr().err
  assert says in err and "Traceback" not in err


def test_dataset_cli_missing_file(tmp_path, capsys):
  assert main(["dataset", str(tmp_path / "none.yaml"), "--count", "5",
               "-o", str(tmp_path)]) == 2
  err = capsys.readouterr().err
  assert "none.yaml" in err and "Traceback" not in err


def test_dataset_cli_writes_and_reports(tmp_path, capsys):
  assert main(["dataset", *jaxloop.example_files(), "--count", "700",
               "--chunk", "256", "-o", str(tmp_path), "--quiet"]) == 0
  assert "700 rows" in capsys.readouterr().out
  manifest = json.loads((tmp_path / "manifest.json").read_text())
  assert manifest["files"][0]["rows"] == 700


# ---------------------------------------------------------------- surrogate
@pytest.fixture(scope="module")
def trained(written):
  from jaxloop.research import surrogate
  out, _ = written
  ex = surrogate.examples_from_dataset(out, dataset.read_manifest(out)[
      "files"])
  config = surrogate.SurrogateConfig(hidden=(64, 64), batch=256, steps=60,
                                     learning_rate=3e-3)
  model, losses = surrogate.train(ex, config)
  return ex, model, losses


def test_surrogate_training_lowers_the_loss(trained):
  ex, model, losses = trained
  assert ex.inputs(slice(0, 3)).shape[1] == model.x_mean.shape[0]
  assert np.mean(losses[-10:]) < 0.7 * np.mean(losses[:10])


def test_surrogate_checkpoint_round_trip(trained, tmp_path):
  from jaxloop.research.surrogate import Surrogate, scores
  ex, model, _ = trained
  model.save(tmp_path / "s.msgpack")
  again = Surrogate.load(tmp_path / "s.msgpack")
  assert again.config == model.config
  x = ex.inputs(slice(0, 200))
  np.testing.assert_array_equal(np.asarray(again.predict(x)),
                                np.asarray(model.predict(x)))
  assert scores(again, ex) == scores(model, ex)


def test_surrogate_checkpoint_refuses_other_files(tmp_path):
  from jaxloop.research.surrogate import Surrogate
  (tmp_path / "x.msgpack").write_bytes(b"\x81\xa1a\x01")
  with pytest.raises(SpecError, match="not a jaxloop surrogate"):
    Surrogate.load(tmp_path / "x.msgpack")


def test_spearman_averages_ties():
  from jaxloop.research.surrogate import spearman
  assert spearman(np.array([1.0, 2, 2, 3]), np.array([1.0, 2, 2, 3])) == (
      pytest.approx(1.0))
  assert spearman(np.arange(5.0), -np.arange(5.0)) == pytest.approx(-1.0)


def test_surrogate_search_reports_exact_legal_mappings(workload, trained):
  from jaxloop.research.guided import surrogate_search
  _, model, _ = trained
  res = surrogate_search(workload, model, budget=256, starts=32,
                         steps_per_round=3, seed=0)
  assert res.evaluated <= 256 and res.best_mapping is not None
  stats = workload.evaluate(res.best_mapping)
  assert bool(stats.valid)
  assert res.best_objective[0] == pytest.approx(float(stats.edp), rel=1e-12)
