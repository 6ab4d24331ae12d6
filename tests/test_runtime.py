"""The command line's runtime tuning (:mod:`jaxloop.runtime`)."""
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from jaxloop import runtime

ROOT = Path(__file__).resolve().parents[1]


def test_use_cpu_cores_sets_devices_once():
  """``runtime.use_cpu_cores`` creates the CPU devices before JAX starts,
  then leaves them alone; a user's XLA_FLAGS setting wins."""
  code = textwrap.dedent("""
      import json, jax
      from jaxloop import runtime
      first = runtime.use_cpu_cores(3)
      n = len(jax.devices("cpu"))
      again = runtime.use_cpu_cores(5)   # JAX is running: no change
      print(json.dumps([first, n, again, len(jax.devices("cpu"))]))
  """)
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  env.pop("XLA_FLAGS", None)
  env.pop("JAX_NUM_CPU_DEVICES", None)
  env.pop("JAXLOOP_CPU_DEVICES", None)
  out = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
  assert out.returncode == 0, out.stderr[-3000:]
  assert json.loads(out.stdout.strip().splitlines()[-1]) == [3, 3, 0, 3]
  env["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
  out = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
  assert out.returncode == 0, out.stderr[-3000:]
  assert json.loads(out.stdout.strip().splitlines()[-1]) == [0, 2, 0, 2]


def test_huge_pages_reexec_once(monkeypatch, tmp_path):
  """``use_huge_pages`` re-executes the same command line with the glibc
  tunable added to the user's, and does nothing once it is set, when the
  user opts out, or where transparent huge pages are off."""
  calls = []
  record = lambda path, argv, env: calls.append((path, argv, env))
  thp = tmp_path / "enabled"
  thp.write_text("always [madvise] never\n")
  monkeypatch.setenv("GLIBC_TUNABLES", "glibc.cpu.x86_ibt=on")
  monkeypatch.delenv("JAXLOOP_NO_REEXEC", raising=False)
  assert runtime.use_huge_pages(record, str(thp))
  (path, argv, env), = calls
  assert path == sys.executable and argv == list(sys.orig_argv)
  assert env["GLIBC_TUNABLES"] == "glibc.cpu.x86_ibt=on:" + runtime.HUGE_PAGES
  # The re-executed process sees the tunable and goes on.
  monkeypatch.setenv("GLIBC_TUNABLES", env["GLIBC_TUNABLES"])
  assert not runtime.use_huge_pages(record, str(thp))
  monkeypatch.delenv("GLIBC_TUNABLES")
  thp.write_text("always madvise [never]\n")
  assert not runtime.use_huge_pages(record, str(thp))
  assert not runtime.use_huge_pages(record, str(tmp_path / "absent"))
  thp.write_text("[always] madvise never\n")
  monkeypatch.setenv("JAXLOOP_NO_REEXEC", "1")
  assert not runtime.use_huge_pages(record, str(thp))
  assert len(calls) == 1
