"""The public API: no process-wide side effects, exact without the caller
enabling 64-bit types, a clear error where the traced model would not be
exact, and the README's Python blocks run as written."""
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from support import REFERENCE

ROOT = Path(__file__).resolve().parents[1]


def _run(code: str, tmp_path, timeout=600, **env) -> str:
  """Runs ``code`` in a fresh interpreter with a clean JAX environment;
  returns its stdout's last line."""
  e = {k: v for k, v in os.environ.items()
       if not k.startswith(("JAX_", "XLA_"))}
  e.update(JAX_PLATFORMS="cpu", HOME=str(tmp_path), **env)
  out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)],
                       env=e, cwd=ROOT, capture_output=True, text=True,
                       timeout=timeout)
  assert out.returncode == 0, out.stderr[-4000:]
  return out.stdout.strip().splitlines()[-1]


def test_import_and_calls_change_nothing_process_wide(tmp_path):
  """Importing jaxloop and calling its entry points leaves os.environ and
  jax's configuration as they were, does not re-execute the process, and
  writes nothing to the home folder."""
  code = """
      import json, os, sys, jax
      import numpy as np
      keys = ("jax_enable_x64", "jax_compilation_cache_dir",
              "jax_num_cpu_devices", "jax_platforms")
      env0, cfg0 = dict(os.environ), {k: getattr(jax.config, k) for k in keys}
      pid = os.getpid()
      import jaxloop
      wl = jaxloop.load(*jaxloop.example_files())
      one = wl.evaluate()
      batch = jax.tree.map(lambda a: np.repeat(a[None], 70, 0), wl.mapping())
      many = jaxloop.evaluator(wl)(jaxloop.Blocked.of(batch))
      res = jaxloop.search(wl, method="random", budget=2000, progress=False)
      st = jaxloop.stream(wl, count=3000, chunk=1024)
      changed = {k: (cfg0[k], getattr(jax.config, k)) for k in keys
                 if getattr(jax.config, k) != cfg0[k]}
      print(json.dumps({
          "env_changed": sorted(k for k in set(env0) | set(os.environ)
                                if env0.get(k) != os.environ.get(k)),
          "config_changed": {k: str(v) for k, v in changed.items()},
          "same_pid": os.getpid() == pid,
          "home": sorted(os.listdir(os.environ["HOME"])),
          "dtype": str(np.asarray(one.reads).dtype),
          "evaluated": int(st.evaluated), "found": res.best_mapping is not None,
          "blocked": float(np.asarray(many.field("energy_total"))[69])
                     == float(one.energy_total)}))
  """
  got = json.loads(_run(code, tmp_path))
  assert got["env_changed"] == [], got
  assert got["config_changed"] == {}, got
  assert got["same_pid"] and got["home"] == [], got
  assert got["dtype"] in ("int64", "float64"), got
  assert got["evaluated"] == 3000 and got["found"] and got["blocked"], got


def test_exact_counts_without_global_x64(tmp_path, reference):
  """A reference case through the public API matches Timeloop count for
  count in a process that never enabled 64-bit types itself; 32-bit types
  would overflow its counts (they pass 2**32)."""
  code = f"""
      import json, jax
      from pathlib import Path
      from jaxloop import validate
      root = Path({str(reference)!r})
      case = next(c for c in json.loads((root / "cases.json").read_text())
                  if c["name"] == "tutorial:08-design-space-exploration-2024")
      got, bad = validate.run_case(root, case)
      print(json.dumps({{"bad": bad, "x64": jax.config.jax_enable_x64,
                         "computes": got["summary"]["computes"]}}))
  """
  got = json.loads(_run(code, tmp_path))
  assert got["bad"] == [] and got["x64"] is False, got
  assert got["computes"] > 2 ** 32, got


def test_traced_model_without_x64_raises_a_clear_error(tmp_path):
  """The traceable model inside a user's own jit with 32-bit types raises
  PrecisionError naming the fix; under jax.enable_x64 it runs."""
  code = """
      import functools, json, jax
      import jaxloop
      wl = jaxloop.load(*jaxloop.example_files())
      m = wl.mapping()
      fn = jax.jit(functools.partial(jaxloop.model.evaluate, wl.structure))
      try:
        fn(wl.params, m)
        msg = ""
      except jaxloop.PrecisionError as e:
        msg = str(e)
      with jax.enable_x64(True):
        e = float(fn(wl.params, m).energy_total)
      print(json.dumps({"msg": msg, "ok": e == float(wl.evaluate().energy_total)}))
  """
  got = json.loads(_run(code, tmp_path))
  assert "jax.enable_x64(True)" in got["msg"], got
  assert got["ok"], got


def _python_blocks(path: Path) -> list[str]:
  return re.findall(r"```python\n(.*?)```", path.read_text(), re.S)


DOCS = [ROOT / "README.md"] + sorted((ROOT / "docs").glob("*.md"))


@pytest.mark.parametrize("path", DOCS, ids=[p.name for p in DOCS])
def test_doc_python_blocks_run_as_written(path, tmp_path):
  """Every ```python block of README.md and docs/*.md runs as written (the
  blocks of one file in order, in one fresh interpreter, from the
  repository root)."""
  blocks = _python_blocks(path)
  if not blocks:
    pytest.skip(f"{path.name} has no python blocks")
  if "../shared" in "".join(blocks) and not REFERENCE.is_dir():
    pytest.skip("the blocks read ../shared/timeloop-reference")
  _run("\n".join(textwrap.dedent(b) for b in blocks) + "\nprint('done')",
       tmp_path)
