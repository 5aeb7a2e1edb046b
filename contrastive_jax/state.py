"""The train state: one pytree, replicated over the mesh, checkpointed whole."""

from typing import Any

import flax.struct
import jax


class TrainState(flax.struct.PyTreeNode):
  """Everything a pre-training run needs to continue exactly.

  Attributes:
    step: int32 scalar, number of optimiser updates applied.
    params: trainable parameters (encoder, heads, online probe).
    batch_stats: BatchNorm running statistics ({} for norm-free encoders).
    opt_state: optax state.
    extras: method state that is not trained by gradients (EMA targets, queues).
    rng: base PRNG key; each step folds in the step and the device index.
  """

  step: jax.Array
  params: Any
  batch_stats: Any
  opt_state: Any
  extras: Any
  rng: jax.Array
