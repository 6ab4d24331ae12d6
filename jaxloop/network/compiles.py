"""Counting the model's compilations (``jax.monitoring`` events).

The evaluator's programs carry one name (:data:`jaxloop.evaluator.
PROGRAM_NAME`), the mapspace's draws another (:data:`DRAW_NAME`); JAX reports each compilation of a jitted function (a trace
on a cache miss, then lowering and the backend compile, or a read from the
persistent compilation cache) as duration events naming the function.
"""
from __future__ import annotations

import contextlib
import dataclasses
import threading

import jax

from jaxloop.evaluator import PROGRAM_NAME

_TRACE = "/jax/core/compile/jaxpr_trace_duration"
# The name of the mapspace's compiled draw (``Mapspace.sample_genome``).
DRAW_NAME = "jaxloop_draw"


@dataclasses.dataclass
class CompileLog:
  """Compilations of model programs seen while :func:`recording`.

  Attributes:
    count: model programs compiled (one trace per jit cache miss).
    seconds: their trace, lowering and compile (or cache read) time.
    draws, draw_seconds: the same for the mapspace's draw programs.
  """
  count: int = 0
  seconds: float = 0.0
  draws: int = 0
  draw_seconds: float = 0.0

  def _event(self, name: str, seconds: float, **kwargs) -> None:
    fun = str(kwargs.get("fun_name", ""))
    fun = fun[4:-1] if fun.startswith("jit(") else fun
    if fun not in (PROGRAM_NAME, DRAW_NAME):
      return
    model = fun == PROGRAM_NAME
    with _LOCK:
      if model:
        self.seconds += float(seconds)
      else:
        self.draw_seconds += float(seconds)
      if name == _TRACE:
        if model:
          self.count += 1
        else:
          self.draws += 1


_LOCK = threading.Lock()


@contextlib.contextmanager
def recording():
  """``with recording() as log:`` counts the model compilations inside the
  block (the listener is removed on exit)."""
  log = CompileLog()
  jax.monitoring.register_event_duration_secs_listener(log._event)
  try:
    yield log
  finally:
    jax.monitoring.unregister_event_duration_listener(log._event)
