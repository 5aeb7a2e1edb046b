"""Linear probe on augmented views through a frozen encoder (SimCLR's linear evaluation, Appendix B.5).

Unlike `linear.train_linear_probe` (precomputed features), every step embeds a new batch of crop +
flip views with the frozen encoder (`embed(enc_state, images)`, no gradient reaches it) and updates
one linear head per (learning rate, weight decay) pair of the grid: all heads see the same
augmented batches, the features of a batch are computed once. The pair with the best held-out top-1
(on eval-view features) is selected; there is no refit. Features are standardised with the mean /
std of the eval-view train features, the optimiser and loss are linear.py's.
"""

from __future__ import annotations

import functools
import itertools
import logging
from collections.abc import Callable, Iterator, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from contrastive_jax import sharding
from contrastive_jax.evaluators import linear


@functools.lru_cache(maxsize=4)
def _grid_step(embed: Callable, optimizer: str, total_steps: int):
  """jit: frozen-encoder features of one augmented batch -> one update of every head of the grid."""

  def step(heads, opt_states, enc_state, images, labels, mean, inv_std, lrs, wds):
    feats = jax.lax.stop_gradient(embed(enc_state, images)).astype(jnp.float32)
    x = (feats - mean) * inv_std

    def one(head, opt_state, lr, wd):
      tx = linear.make_tx(optimizer, lr, wd, total_steps)
      loss, g = jax.value_and_grad(linear.cross_entropy)(head, x, labels)
      updates, opt_state = tx.update(g, opt_state, head)
      return optax.apply_updates(head, updates), opt_state, loss

    return jax.vmap(one)(heads, opt_states, lrs, wds)

  return jax.jit(step, donate_argnums=(0, 1))


def train_augmented_probe(
  embed: Callable,
  enc_state,
  batches: Iterator[dict],
  *,
  train_x,
  val_x,
  val_y,
  num_classes: int,
  lrs: Sequence[float],
  weight_decays: Sequence[float],
  optimizer: str,
  total_steps: int,
  mesh,
  on_loss: Callable[[int, float], None] | None = None,
  log_every: int = 50,
  resume: tuple[int, list] | None = None,
  on_stop: Callable[[int, list], None] | None = None,
) -> linear.LinearProbeResult:
  """Trains a grid of linear heads on augmented batches of a frozen encoder; selects on val.

  Args:
    embed: `embed(enc_state, images) -> features` (a method's embed; jitted here).
    enc_state: the frozen encoder's state (replicated over the mesh); never changed.
    batches: endless host batches {'image' (b, S, S, 3) float32, 'label' (b,) int32}, b rows per
      process (e.g. data.eval_views.augmented_array_batches).
    train_x: (n, d) eval-view features of the training examples (normalisation statistics).
    val_x: (m, d) held-out eval-view features; val_y: (m,) their labels (selection).
    num_classes: classes of the heads.
    lrs: peak learning rates; weight_decays: kernel weight decays (every combination is a head).
    optimizer: 'sgd_nesterov' or 'lars'.
    total_steps: training steps (cosine schedule length).
    mesh: device mesh; batches are sharded over it, the heads replicated.
    on_loss: called as on_loss(step, smallest head loss) every `log_every` steps and at the end.
    log_every: steps between on_loss calls.
    resume: (steps done, leaves) from an earlier `on_stop`: training continues at step + 1 with
      those heads and optimiser states; `batches` must then start at that step's batch
      (eval_views.augmented_array_batches(skip_batches=step)). The result equals an uninterrupted
      run's.
    on_stop: called as on_stop(steps done, leaves) when fetching a batch raises (a preemption
      request from watcher.interruptible, a data error), before the error propagates: the caller
      saves the leaves (host numpy arrays of the heads and optimiser states) to resume from.

  Returns:
    linear.LinearProbeResult (normalization 'standardize', refit False).
  """
  if optimizer not in ("sgd_nesterov", "lars"):
    raise ValueError(
      f"augmented linear probe optimizer {optimizer!r}: use 'sgd_nesterov' or 'lars'."
    )
  if total_steps < 1:
    raise ValueError(f"augmented linear probe needs total_steps >= 1, got {total_steps}")
  pairs = list(itertools.product([float(v) for v in lrs], [float(v) for v in weight_decays]))
  lr_arr = jnp.asarray([p[0] for p in pairs], jnp.float32)
  wd_arr = jnp.asarray([p[1] for p in pairs], jnp.float32)
  train_x = np.asarray(train_x, np.float32)
  g, d = len(pairs), train_x.shape[1]
  mean = train_x.mean(0).astype(np.float32)
  inv_std = (1.0 / (train_x.std(0) + 1e-6)).astype(np.float32)
  heads = {
    "kernel": jnp.zeros((g, d, num_classes), jnp.float32),
    "bias": jnp.zeros((g, num_classes), jnp.float32),
  }
  opt_states = jax.vmap(lambda lr, wd, h: linear.make_tx(optimizer, lr, wd, total_steps).init(h))(
    lr_arr, wd_arr, heads
  )
  start = 0
  if resume is not None:
    start, (heads, opt_states) = int(resume[0]), _unflatten((heads, opt_states), resume[1])
  step = _grid_step(embed, str(optimizer), int(total_steps))
  heads, opt_states, mean_d, inv_d, lr_arr, wd_arr = jax.device_put(
    (heads, opt_states, mean, inv_std, lr_arr, wd_arr), sharding.replicated(mesh)
  )
  logging.info("Augmented linear probe: %d heads, steps %d-%d.", g, start + 1, total_steps)
  for s in range(start + 1, total_steps + 1):
    try:
      host = next(batches)
    except Exception:
      if on_stop is not None:
        on_stop(
          s - 1, [np.asarray(x) for x in sharding.to_host(jax.tree.leaves((heads, opt_states)))]
        )
      raise
    gb = sharding.global_batch(host, mesh)
    heads, opt_states, loss = step(
      heads, opt_states, enc_state, gb["image"], gb["label"], mean_d, inv_d, lr_arr, wd_arr
    )
    if on_loss is not None and (s % log_every == 0 or s == total_steps):
      on_loss(s, float(np.min(sharding.to_host(loss))))
  kernels, biases = sharding.to_host((heads["kernel"], heads["bias"]))
  xv = (np.asarray(val_x, np.float32) - mean) * inv_std
  acc = linear.grid_accuracy(
    jnp.asarray(kernels), jnp.asarray(biases), jnp.asarray(xv), jnp.asarray(val_y, jnp.int32)
  )
  best, grid = linear.select(pairs, acc)
  params = {
    "kernel": kernels[best],
    "bias": biases[best],
    "mean": mean,
    "inv_std": inv_std,
    "l2": np.bool_(False),
  }
  return linear.LinearProbeResult(
    params=params,
    best_lr=pairs[best][0],
    best_weight_decay=pairs[best][1],
    val_top1=float(acc[best, 0]),
    val_top5=float(acc[best, 1]),
    grid=grid,
    normalization="standardize",
    refit=False,
  )


def _unflatten(like, leaves: list):
  """`like`'s tree with the saved leaves; a saved state of another grid or shape is an error."""
  want = jax.tree.leaves(like)
  if len(leaves) != len(want) or any(
    np.shape(a) != np.shape(b) or np.asarray(a).dtype != np.asarray(b).dtype
    for a, b in zip(leaves, want)
  ):
    raise ValueError(
      f"The saved augmented-probe state ({len(leaves)} arrays) does not match this probe "
      f"({len(want)} arrays of the grid's shapes); delete it to start the probe over."
    )
  return jax.tree.unflatten(jax.tree.structure(like), [jnp.asarray(x) for x in leaves])
