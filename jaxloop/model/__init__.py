"""The exact, batched Timeloop model (jax)."""
from jaxloop.model.blocks import (evaluate_blocks, from_blocks,
                                  make_block_evaluator, to_blocks)
from jaxloop.model.evaluate import (evaluate, evaluate_batch, make_evaluator,
                                    make_single_evaluator)
