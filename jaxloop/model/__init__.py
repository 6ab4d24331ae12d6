"""The exact, batched Timeloop model (jax)."""
from jaxloop.model.evaluate import evaluate, make_evaluator, make_single_evaluator
