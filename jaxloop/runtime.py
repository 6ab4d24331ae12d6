"""Process tuning for the ``jaxloop`` command line (never for the library).

:func:`configure` runs once at the start of a real command line
(``jaxloop ...`` / ``python -m jaxloop ...``), before JAX starts.  Each
setting can be turned off by its environment variable; the library
(``import jaxloop``) never calls any of this.  What each one is worth is
measured by ``experiments/bench_runtime.py`` (figures in
``docs/performance.md``).

* compilation cache: JAX's persistent cache in ``$JAXLOOP_CACHE_DIR``
  (default ``~/.cache/jaxloop/xla``; ``off`` disables): a second run of the
  same architecture and layer skips XLA compilation (of every program,
  however quick: ``CACHE_MIN_COMPILE_SECONDS``).
* CPU devices: one JAX CPU device per core (``JAXLOOP_CPU_DEVICES=N``; 1
  disables), so sharded batches keep every core busy.
* huge pages: re-executes the command once with glibc's
  ``glibc.malloc.hugetlb=1`` (``JAXLOOP_NO_REEXEC=1`` disables): large
  outputs are written into transparent huge pages, fewer page faults.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

HUGE_PAGES = "glibc.malloc.hugetlb=1"
# Programs that compile faster than this are not written to the persistent
# cache (JAX's default is 1 s).
CACHE_MIN_COMPILE_SECONDS = 0.0
_THP = "/sys/kernel/mm/transparent_hugepage/enabled"


def configure() -> dict:
  """Applies the command line's tuning; returns what was set (for logs)."""
  done = {"huge_pages": use_huge_pages()}
  done["cpu_devices"] = use_cpu_cores()
  done["cache"] = use_compilation_cache()
  return done


def process_started() -> float | None:
  """This process's start as a ``time.perf_counter()`` reading (from the
  kernel's record in ``/proc``, so it includes interpreter start-up and a
  re-exec); None where unknown."""
  import time
  try:
    with open("/proc/self/stat") as f:      # field 22: start, in ticks
      ticks = int(f.read().rsplit(")", 1)[1].split()[19])
    with open("/proc/uptime") as f:
      uptime = float(f.read().split()[0])
    age = uptime - ticks / os.sysconf("SC_CLK_TCK")
  except (OSError, ValueError, IndexError):
    return None
  return time.perf_counter() - min(max(age, 0.0), 3600.0)


def cores() -> int:
  """Cores this process may run on."""
  if hasattr(os, "sched_getaffinity"):
    return len(os.sched_getaffinity(0))
  return os.cpu_count() or 1


def use_compilation_cache() -> str:
  """Turns on JAX's persistent compilation cache; returns its folder ('' when
  off, unwritable, or already set by the user)."""
  import jax
  if jax.config.jax_compilation_cache_dir:
    return ""
  path = os.environ.get("JAXLOOP_CACHE_DIR",
                        str(Path.home() / ".cache" / "jaxloop" / "xla"))
  if path.lower() in ("", "off", "0", "none"):
    return ""
  try:
    os.makedirs(path, exist_ok=True)
  except OSError:
    return ""
  if not os.access(path, os.W_OK):
    return ""
  jax.config.update("jax_compilation_cache_dir", path)
  # Every program is cached, however quick its compile: a network's mapspace
  # draws and the estimator's small programs add up to seconds per run.
  jax.config.update("jax_persistent_cache_min_compile_time_secs",
                    CACHE_MIN_COMPILE_SECONDS)
  jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
  return path


def use_cpu_cores(count: int | None = None) -> int:
  """One JAX CPU device per core (before JAX starts its backends).

  Leaves the count alone when the user chose it (``XLA_FLAGS`` with
  ``--xla_force_host_platform_device_count``, ``JAX_NUM_CPU_DEVICES``) or
  when JAX is already running.  Returns the count set, or 0.
  """
  import jax
  if ("xla_force_host_platform_device_count" in os.environ.get("XLA_FLAGS", "")
      or os.environ.get("JAX_NUM_CPU_DEVICES")):
    return 0
  env = os.environ.get("JAXLOOP_CPU_DEVICES")
  count = int(env) if env else (cores() if count is None else int(count))
  try:
    jax.config.update("jax_num_cpu_devices", count)
  except RuntimeError:   # backends already initialized: keep what is there
    return 0
  return count


def use_huge_pages(execve=os.execve, thp: str = _THP) -> bool:
  """Re-runs this command line once with glibc's malloc asking for
  transparent huge pages (``GLIBC_TUNABLES``, read only at process start).

  Does nothing (returns False) where transparent huge pages are off or
  absent, in an interactive session or a script read from stdin, when
  ``GLIBC_TUNABLES`` already sets ``glibc.malloc.hugetlb`` (also after the
  re-exec), or when ``JAXLOOP_NO_REEXEC`` is set.

  Args:
    execve: replaces the process (tests pass a recorder).
    thp: the kernel's transparent-huge-page mode file.
  """
  tunables = os.environ.get("GLIBC_TUNABLES", "")
  if ("glibc.malloc.hugetlb" in tunables or os.environ.get("JAXLOOP_NO_REEXEC")
      or not getattr(sys, "orig_argv", None)
      or sys.argv[0] in ("", "-")):
    return False
  try:
    with open(thp) as f:
      mode = f.read()
  except OSError:
    return False
  if "[never]" in mode:
    return False
  env = dict(os.environ)
  env["GLIBC_TUNABLES"] = ":".join(t for t in (tunables, HUGE_PAGES) if t)
  sys.stdout.flush()
  sys.stderr.flush()
  execve(sys.executable, list(sys.orig_argv), env)
  return True
