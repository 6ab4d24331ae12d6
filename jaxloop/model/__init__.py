"""The exact, batched Timeloop model (jax)."""
from jaxloop.model.evaluate import (evaluate, evaluate_batch, make_evaluator,
                                    make_single_evaluator)
