"""Streaming reduction, sharding over devices, one compilation per stream."""
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import numpy as np
import pytest

import jaxloop
from jaxloop import api
from jaxloop.streaming import (DEFAULT_RANGE, METRICS, _smallest, merge_results,
                            stream)
from jaxloop.validate import case_files

from support import reference_cases
from support import random_mappings

ROOT = Path(__file__).resolve().parents[1]
CHUNK = 512


def _load(reference, name="example_designs:eyeriss_like"):
  case = next(c for c in reference_cases() if c["name"] == name)
  return api.load(*case_files(reference, case))


def _pieces(m, sizes):
  """Splits a numpy Mapping batch into uneven pieces."""
  out, start = [], 0
  for n in sizes:
    out.append(jax.tree.map(lambda a: a[start:start + n], m))
    start += n
  return out


def test_smallest_is_a_stable_top_k():
  """The two-stage top-k of the stream == a stable sort, ties included."""
  rng = np.random.default_rng(0)
  for _ in range(50):
    n = 64 * int(rng.integers(64, 200))
    k = int(rng.integers(1, 17))
    x = rng.integers(0, int(rng.integers(2, 50)), n).astype(float)
    x[rng.random(n) < rng.random()] = np.inf
    want = np.lexsort((np.arange(n), x))[:k]
    np.testing.assert_array_equal(
        np.asarray(_smallest(jax.numpy.asarray(x), k)), want)


def test_stream_takes_one_source(reference):
  """Exactly one of source= and count=; one-metric objectives only."""
  wl = _load(reference)
  with pytest.raises(TypeError):
    stream(wl)
  with pytest.raises(TypeError):
    stream(wl, [wl.mapping()], count=10)
  with pytest.raises(jaxloop.SpecError):
    stream(wl, count=10, objective="energy,delay")


def test_topk_matches_numpy_sort(reference):
  """Running top-k, bests, counts and histogram == a sort of all stats."""
  wl = _load(reference)
  m = random_mappings(wl.structure, 3000, seed=5)
  stats = wl.evaluate(m)
  valid = np.asarray(stats.valid)
  energy = np.asarray(stats.energy_total, np.float64)
  cycles = np.asarray(stats.cycles, np.float64)
  edp = np.where(valid, energy * 1e-12 * cycles, np.inf)
  res = stream(wl, _pieces(m, [700, 1100, 0, 1, 1199]),
                      chunk=CHUNK, topk=10, histogram_bins=32)
  want = np.argsort(edp, kind="stable")[:10]
  want = want[np.isfinite(edp[want])]
  np.testing.assert_array_equal(res.topk_index, want)
  np.testing.assert_allclose(res.topk_objective, edp[want], rtol=1e-12)
  np.testing.assert_array_equal(res.topk_mapping.temporal, m.temporal[want])
  np.testing.assert_array_equal(res.topk_mapping.order, m.order[want])
  assert res.evaluated == 3000 and res.valid == int(valid.sum())
  assert res.chunks == 6 and res.compiles == 1
  for name, col in (("energy", energy), ("cycles", cycles), ("edp", edp)):
    col = np.where(valid, col, np.inf)
    value, index, best = res.best[name]
    assert index == int(np.argmin(col))
    np.testing.assert_allclose(value, col.min(), rtol=1e-12)
    np.testing.assert_array_equal(best.spatial_x, m.spatial_x[index])
  lo, hi = DEFAULT_RANGE[2]
  logv = np.clip(np.log10(edp[valid]), lo, hi - 1e-9)
  hist, _ = np.histogram(logv, bins=32, range=(lo, hi))
  np.testing.assert_array_equal(res.histogram, hist)


def test_drawn_stream_one_compile_and_parts(reference):
  """On-device draws: legal factors, one compilation, parts merge exactly."""
  wl = _load(reference)
  count = 5 * CHUNK + 100
  drawn = jax.tree.map(np.asarray, jax.jit(
      wl.mapspace.draw, static_argnums=1)(jax.random.PRNGKey(1), 256))
  spatial = drawn.spatial_x * drawn.spatial_y
  assert (np.prod(drawn.temporal * spatial, axis=1)
          == np.asarray(wl.structure.dim_bounds)).all()
  assert (np.prod(drawn.spatial_x, axis=2)
          <= np.asarray(wl.structure.fanout_x)).all()
  assert (np.prod(drawn.spatial_y, axis=2)
          <= np.asarray(wl.structure.fanout_y)).all()
  run = lambda **kw: stream(wl, count=count, seed=3, chunk=CHUNK,
                                   objective="energy", topk=8, **kw)
  whole = run()
  assert whole.evaluated == count and whole.chunks == 6
  assert whole.compiles == 1
  parts = [run(part=(i, 2)) for i in range(2)]
  merged = merge_results(parts)
  np.testing.assert_array_equal(merged.topk_index, whole.topk_index)
  np.testing.assert_array_equal(merged.topk_objective, whole.topk_objective)
  np.testing.assert_array_equal(merged.histogram, whole.histogram)
  assert (merged.evaluated, merged.valid) == (whole.evaluated, whole.valid)
  for name in METRICS:
    assert merged.best[name][:2] == whole.best[name][:2]
  # The top-k mappings are the ones the stream drew at those positions.
  again = run()
  assert again.compiles == 1
  np.testing.assert_array_equal(again.topk_mapping.temporal,
                                whole.topk_mapping.temporal)
  check = wl.evaluate(whole.topk_mapping)
  np.testing.assert_allclose(check.energy_total, whole.topk_objective,
                             rtol=1e-12)
  chunk_id, row = divmod(int(whole.topk_index[0]), CHUNK)
  key = jax.random.fold_in(jax.random.PRNGKey(3), chunk_id)
  redrawn = jax.tree.map(np.asarray, wl.mapspace.draw(key, CHUNK))
  for a, b in zip(jax.tree.leaves(redrawn), jax.tree.leaves(
      whole.topk_mapping)):
    np.testing.assert_array_equal(a[row], b[0])


_SHARDED = textwrap.dedent("""
    import json, sys
    import jax, numpy as np
    sys.path.insert(0, {tests!r})
    import jaxloop
    from jaxloop.streaming import stream
    from support import random_mappings
    assert jax.local_device_count() == 4, jax.devices()
    assert not jax.config.jax_enable_x64
    wl = jaxloop.load(*{files!r})
    one_device = jax.local_devices()[:1]
    m = random_mappings(wl.structure, 4096, seed=11)
    one = jax.tree.map(np.asarray,
                       jaxloop.evaluator(wl, devices=one_device)(m))
    many = jaxloop.evaluator(wl)(m)
    blocked = jaxloop.evaluator(wl)(jaxloop.Blocked.of(m, 64)).unblock()
    rec = jaxloop.evaluator(wl, recycle=True)
    flipped = jax.tree.map(lambda a: np.asarray(a)[::-1], m)
    rec(jaxloop.Blocked.of(flipped, 64))
    recycled = rec(jaxloop.Blocked.of(m, 64)).unblock()
    bad = []
    for name in one.__dataclass_fields__:
      a = getattr(one, name)
      for label, other in (("sharded", many), ("blocked", blocked),
                           ("recycled", recycled)):
        if not np.array_equal(a, np.asarray(getattr(other, name))):
          bad.append(label + "." + name)
    r4 = stream(wl, [m], chunk=4096, topk=12)
    edp = np.where(one.valid, one.energy_total * 1e-12 * one.cycles, np.inf)
    want = np.argsort(edp, kind="stable")[:12]
    if not (np.array_equal(r4.topk_index, want)
            and np.allclose(r4.topk_objective, edp[want], rtol=1e-12, atol=0)
            and r4.valid == int(one.valid.sum())):
      bad.append("stream")
    drawn = [stream(wl, count=3 * 4096 + 5, seed=4, chunk=4096,
                           topk=12, devices=devs)
             for devs in (None, one_device)]
    for field in ("topk_index", "topk_objective", "histogram"):
      if not np.array_equal(getattr(drawn[0], field),
                            getattr(drawn[1], field)):
        bad.append("drawn stream." + field)
    if drawn[0].valid != drawn[1].valid or drawn[0].valid < 100:
      bad.append("drawn stream.valid")
    print(json.dumps({{"bad": bad, "valid": int(one.valid.sum())}}))
""")


@pytest.mark.slow
def test_sharded_equals_single_device(reference):
  """4 host devices (a subprocess: the flag must precede jax start-up).

  Bitwise equality needs the same per-row code: XLA's CPU code for the
  energy sum depends on the batch shape, and batches of a few hundred rows
  may differ from large ones by 1 ulp, on one device as well.  So the
  single-device reference is evaluated at the same global batch (4096,
  1024 per device).  The subprocess does not turn 64-bit types on: the
  public entry points do that for their calls.
  """
  files = [str(f) for f in case_files(
      reference, next(c for c in reference_cases()
                      if c["name"] == "example_designs:eyeriss_like"))]
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4",
             JAX_PLATFORMS="cpu")
  code = _SHARDED.format(tests=str(ROOT / "tests"), files=files)
  out = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT,
                       capture_output=True, text=True, timeout=300)
  assert out.returncode == 0, out.stderr[-3000:]
  got = json.loads(out.stdout.strip().splitlines()[-1])
  assert got["bad"] == [], got
  assert got["valid"] > 100
