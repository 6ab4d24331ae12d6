"""64-bit arithmetic for jaxloop's calls, without touching the process.

Timeloop's counts are integers that pass 2**31 (accesses) and 2**24 (MACs):
the model computes in int64/float64.  jaxloop does not switch
``jax_enable_x64`` on for the whole process.  Instead:

* every public entry point (``load``, ``Workload.evaluate``, evaluators,
  searches, streams) runs under :func:`exact`: 64-bit types inside the call
  only (``jax.enable_x64(True)`` as a context), the caller's setting
  untouched afterwards;
* the traceable model functions (``jaxloop.model.evaluate`` and friends,
  called inside a user's own ``jit``/``grad``) check at trace time that
  64-bit types are on and otherwise raise :class:`PrecisionError` saying
  what to do: wrap the call in ``with jax.enable_x64(True):`` or set
  ``jax_enable_x64``.
"""
from __future__ import annotations

import functools

import jax


class PrecisionError(RuntimeError):
  """The model was traced with 32-bit types: counts would not be exact."""


def exact(fn):
  """Runs ``fn`` with JAX's 64-bit types on, for that call only."""
  @functools.wraps(fn)
  def wrapped(*args, **kwargs):
    with jax.enable_x64(True):
      return fn(*args, **kwargs)

  return wrapped


def require_x64(what: str = "jaxloop's model") -> None:
  """Raises :class:`PrecisionError` unless 64-bit types are on (trace time).
  """
  if not jax.config.jax_enable_x64:
    raise PrecisionError(
        f"{what} needs 64-bit types (exact int64/float64 counts), but "
        "jax_enable_x64 is off in this trace. Wrap the call in "
        "`with jax.enable_x64(True):` or set "
        "jax.config.update('jax_enable_x64', True) (or JAX_ENABLE_X64=1); "
        "jaxloop's own entry points (load, evaluate, evaluator, search, "
        "stream) do this for their call.")
