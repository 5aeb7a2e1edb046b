"""solo-learn's LARS (solo/utils/lars.py), the optimiser of its CIFAR recipes, as an optax transform.

It differs from optax.lars (SimCLR's and BYOL's LARS) in three ways, each from solo-learn's `step`:

1. The trust ratio is eta ||w|| / (||g|| + wd ||w|| + eps), not eta ||w|| / ||g + wd w||.
2. `clip_lr`: the ratio is clipped at the learning rate, q = min(ratio / lr, 1), so a layer never
   steps faster than the global rate (the LARC "clip" mode).
3. The learning rate multiplies the momentum buffer (buf = mu buf + q (g + wd w); w -= lr buf), as
   PyTorch's SGD does, instead of entering it.

Leaves outside `mask` (biases, norm parameters, the online probe) get plain momentum SGD without
weight decay, and so do leaves whose weight or gradient norm is 0 (solo-learn skips them too).
"""

from typing import Any, NamedTuple
from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax


class LarsState(NamedTuple):
  count: jax.Array
  momentum: Any


def solo_lars(
  learning_rate: optax.Schedule,
  *,
  weight_decay: float,
  eta: float,
  momentum: float,
  nesterov: bool = False,
  clip_lr: bool = True,
  mask: Callable[[Any], Any],
  eps: float = 1e-8,
) -> optax.GradientTransformation:
  """solo-learn's LARS step (module docstring); returns the parameter updates (w_new - w).

  Args:
    learning_rate: step -> learning rate.
    weight_decay: L2 coefficient, added to the gradient of masked leaves.
    eta: trust coefficient (solo-learn's CIFAR recipes use 0.02).
    momentum: momentum coefficient.
    nesterov: Nesterov momentum.
    clip_lr: clip the layer's rate at the learning rate.
    mask: params -> tree of bools, True for the leaves LARS adapts.
    eps: the denominator's epsilon.

  Returns:
    An optax.GradientTransformation.
  """

  def init(params):
    return LarsState(count=jnp.zeros((), jnp.int32), momentum=jax.tree.map(jnp.zeros_like, params))

  def update(grads, state, params):
    if params is None:
      raise ValueError("solo_lars needs the parameters (tx.update(grads, state, params)).")
    lr = jnp.asarray(learning_rate(state.count), jnp.float32)

    def scaled(g, w, adapt):
      if not adapt:
        return g
      w_norm, g_norm = jnp.linalg.norm(w), jnp.linalg.norm(g)
      ratio = eta * w_norm / (g_norm + weight_decay * w_norm + eps)
      if clip_lr:
        # lr = 0 (first warm-up step): ratio / 0 = inf, clipped to 1, as in solo-learn.
        ratio = jnp.minimum(ratio / lr, 1.0)
      ok = (w_norm > 0) & (g_norm > 0)
      return jnp.where(ok, (g + weight_decay * w) * ratio.astype(g.dtype), g)

    d = jax.tree.map(scaled, grads, params, mask(params))
    buf = jax.tree.map(lambda b, x: momentum * b + x, state.momentum, d)
    step = jax.tree.map(lambda x, b: x + momentum * b, d, buf) if nesterov else buf
    updates = jax.tree.map(lambda s: (-lr * s).astype(s.dtype), step)
    return updates, LarsState(count=optax.safe_increment(state.count), momentum=buf)

  return optax.GradientTransformation(init, update)
