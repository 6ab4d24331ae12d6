"""The exact, batched Timeloop model: pure, traceable functions.

``evaluate(structure, params, mapping)`` for one mapping (compose with
``jax.vmap``, ``jax.grad`` on relaxed mappings, or your own ``jit``);
``evaluate_batch`` for a leading batch axis; ``evaluate_blocks`` for the
blocked layout.  They need 64-bit types on in the trace
(:mod:`jaxloop.precision`); for compiled, sharded calls use
:func:`jaxloop.evaluator`.
"""
from jaxloop.model.blocks import evaluate_blocks
from jaxloop.model.evaluate import evaluate, evaluate_batch, evaluate_last

__all__ = ["evaluate", "evaluate_batch", "evaluate_blocks", "evaluate_last"]
