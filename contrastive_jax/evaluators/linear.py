"""Linear probe on precomputed (frozen) features, with hyper-parameter selection on a held-out split.

Protocol (as in Kolesnikov et al. 2019 and SimCLR's appendix B.5): the caller splits the train set
with `holdout_split`, `train_linear_probe` trains one linear classifier per (learning rate, weight
decay) pair on the train part, picks the pair with the best top-1 on the held-out part, and
(refit=True, the default) retrains with that pair on train + held-out. The test split is touched
once, by the caller, with `evaluate_linear`.

Features are standardised with the mean and standard deviation of the training features (per
dimension; normalization='standardize', the default), or L2-normalised per row (normalization='l2').
The statistics are part of the returned params, so `evaluate_linear` takes raw features.

All pairs of the grid are trained at once: each epoch is one jitted lax.scan over its steps,
vmapped over the grid (a caller's `between_epochs` hook runs between epochs: preemption), and every
pair sees the same mini-batches. Softmax cross-entropy, zero init,
cosine learning-rate decay to 0 over all steps, weight decay on the kernel only (not the bias).

The pieces are public for the augmented probe (linear_augmented.py) and the protocols: make_tx,
cross_entropy, grid_accuracy, select, predict, topk_accuracy.

Cost: the train features live on the default device in float32 (50k x 512 is 100 MB; ImageNet-1k x
2048 is 10 GB). On 2 CPU cores, 45k x 512 features, 10 classes, 6 pairs, 30 epochs at batch 1024
plus the refit take about 20 s.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

_EVAL_CHUNK = 8192
_OPTIMIZERS = ("sgd_nesterov", "lars")
_NORMALIZATIONS = ("standardize", "l2")


@dataclasses.dataclass(frozen=True)
class LinearProbeResult:
  """Outcome of `train_linear_probe`.

  Attributes:
    params: classifier for `evaluate_linear` (kernel, bias and the feature normalisation); trained
      on train + val when refit, else on train only.
    best_lr: selected learning rate.
    best_weight_decay: selected weight decay.
    val_top1: held-out top-1 of the selected pair (trained on train only).
    val_top5: held-out top-5 of the selected pair.
    grid: one dict per pair: lr, weight_decay, val_top1, val_top5.
    normalization: 'standardize' or 'l2'.
    refit: whether params were retrained on train + val.
  """

  params: dict
  best_lr: float
  best_weight_decay: float
  val_top1: float
  val_top5: float
  grid: list
  normalization: str
  refit: bool

  def evaluate(self, x, y) -> tuple[float, float]:
    """(top1, top5) of the final classifier on raw features x and labels y."""
    return evaluate_linear(self.params, x, y)


def holdout_split(
  num_examples: int, fraction: float = 0.1, seed: int = 0, labels=None
) -> tuple[np.ndarray, np.ndarray]:
  """Disjoint, reproducible (train_idx, val_idx) split of range(num_examples).

  Args:
    num_examples: size of the split being divided.
    fraction: share of examples held out for validation, in (0, 1).
    seed: NumPy seed; the same seed gives the same split.
    labels: optional (num_examples,) labels; if given, each class contributes round(fraction * class
      size) examples (at least one for classes with two or more examples), so the held-out split is
      stratified.

  Returns:
    Sorted int64 index arrays; together they cover every index exactly once.
  """
  if not 0.0 < fraction < 1.0:
    raise ValueError(f"holdout fraction must be in (0, 1), got {fraction}")
  if num_examples < 2:
    raise ValueError(f"holdout_split needs at least 2 examples, got {num_examples}")
  rng = np.random.default_rng(seed)
  if labels is None:
    n_val = min(max(1, round(fraction * num_examples)), num_examples - 1)
    val = rng.permutation(num_examples)[:n_val]
  else:
    labels = np.asarray(labels).reshape(-1)
    if labels.shape[0] != num_examples:
      raise ValueError(f"holdout_split: {labels.shape[0]} labels for {num_examples} examples")
    parts = []
    for c in np.unique(labels):
      members = np.flatnonzero(labels == c)
      n_val = min(max(1, round(fraction * members.size)), members.size - 1)
      parts.append(rng.permutation(members)[:n_val])
    val = np.concatenate(parts)
  is_val = np.zeros(num_examples, bool)
  is_val[val] = True
  return np.flatnonzero(~is_val).astype(np.int64), np.flatnonzero(is_val).astype(np.int64)


def _normalizer(x: np.ndarray, normalization: str) -> dict:
  if normalization == "standardize":
    mean = x.mean(axis=0)
    inv_std = 1.0 / (x.std(axis=0) + 1e-6)
  else:
    mean = np.zeros(x.shape[1], np.float32)
    inv_std = np.ones(x.shape[1], np.float32)
  return {
    "mean": mean.astype(np.float32),
    "inv_std": inv_std.astype(np.float32),
    "l2": np.bool_(normalization == "l2"),
  }


def _apply_normalizer(x, norm: dict):
  x = jnp.asarray(x, jnp.float32)
  if bool(norm["l2"]):
    x = x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), 1e-12)
  return (x - norm["mean"]) * norm["inv_std"]


def make_tx(optimizer: str, lr, weight_decay, total_steps: int):
  """The probe's optimiser: cosine decay of `lr` to 0 over total_steps; weight decay on the kernel only.

  Args:
    optimizer: 'sgd_nesterov' (momentum 0.9) or 'lars'.
    lr: peak learning rate (may be traced: one per head of a vmapped grid).
    weight_decay: L2 weight decay of the kernel (may be traced).
    total_steps: length of the cosine schedule.
  """

  def schedule(count):
    return lr * 0.5 * (1.0 + jnp.cos(jnp.pi * jnp.minimum(count, total_steps) / total_steps))

  mask = {"kernel": True, "bias": False}
  if optimizer == "sgd_nesterov":
    return optax.chain(
      optax.add_decayed_weights(weight_decay, mask=mask),
      optax.sgd(schedule, momentum=0.9, nesterov=True),
    )
  return optax.lars(
    schedule, weight_decay=weight_decay, weight_decay_mask=mask, trust_ratio_mask=mask, momentum=0.9
  )


def cross_entropy(params, x, y):
  """Mean softmax cross-entropy of a linear head {'kernel', 'bias'} on normalised features x."""
  logits = x @ params["kernel"] + params["bias"]
  return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()


@functools.partial(jax.jit, static_argnames=("d", "num_classes", "optimizer", "total"))
def _init_grid(lrs, wds, *, d, num_classes, optimizer, total):
  """Zero-initialised classifiers and their optimiser states, one per (lrs[i], wds[i])."""

  def init_one(lr, wd):
    params = {
      "kernel": jnp.zeros((d, num_classes), jnp.float32),
      "bias": jnp.zeros((num_classes,), jnp.float32),
    }
    return params, make_tx(optimizer, lr, wd, total).init(params)

  return jax.vmap(init_one)(lrs, wds)


@functools.partial(jax.jit, static_argnames=("optimizer", "total"), donate_argnums=(0,))
def _fit_epoch(carry, x, y, lrs, wds, batches, *, optimizer, total):
  """One epoch (`batches`: (steps, batch) row indices) of every classifier of the grid."""

  def fit_one(carry_i, lr, wd):
    tx = make_tx(optimizer, lr, wd, total)

    def step(c, idx):
      params, opt_state = c
      grads = jax.grad(cross_entropy)(params, x[idx], y[idx])
      updates, opt_state = tx.update(grads, opt_state, params)
      return (optax.apply_updates(params, updates), opt_state), None

    return jax.lax.scan(step, carry_i, batches)[0]

  return jax.vmap(fit_one)(carry, lrs, wds)


def _fit_grid(
  x, y, lrs, wds, key, *, num_classes, epochs, batch_size, optimizer, between_epochs=None
):
  """Trains one classifier per (lrs[i], wds[i]); returns params with a leading grid axis.

  One jitted call per epoch (the same steps as one scan over all of them), so `between_epochs()`
  runs between two epochs: the protocols raise a preemption request from there.
  """
  x, y = jnp.asarray(x), jnp.asarray(y)
  n, d = x.shape
  steps_per_epoch = n // batch_size
  total = epochs * steps_per_epoch
  # One shuffled order per epoch (the remainder of n / batch_size is dropped, a different part each
  # epoch).
  order = jax.vmap(lambda k: jax.random.permutation(k, n))(jax.random.split(key, epochs))
  batches = order[:, : steps_per_epoch * batch_size].reshape(epochs, steps_per_epoch, batch_size)
  carry = _init_grid(lrs, wds, d=int(d), num_classes=num_classes, optimizer=optimizer, total=total)
  for e in range(epochs):
    if between_epochs is not None and e > 0:
      between_epochs()
    carry = _fit_epoch(carry, x, y, lrs, wds, batches[e], optimizer=optimizer, total=total)
  return carry[0]


def _correct_counts(kernel, bias, x, y):
  """(top1, top5) correct counts of a linear classifier on normalised x."""
  logits = x @ kernel + bias
  k = min(5, logits.shape[-1])
  _, top = jax.lax.top_k(logits, k)
  hits = top == y[:, None]
  return hits[:, 0].sum(), hits.any(axis=1).sum()


_grid_correct_counts = jax.jit(jax.vmap(_correct_counts, in_axes=(0, 0, None, None)))


def grid_accuracy(kernels, biases, x, y) -> np.ndarray:
  """(grid, 2) top1/top5 accuracies of (grid, d, C) kernels on normalised x, chunked over examples."""
  counts = np.zeros((kernels.shape[0], 2), np.int64)
  for start in range(0, x.shape[0], _EVAL_CHUNK):
    c1, c5 = _grid_correct_counts(
      kernels, biases, x[start : start + _EVAL_CHUNK], y[start : start + _EVAL_CHUNK]
    )
    counts += np.stack([np.asarray(c1), np.asarray(c5)], axis=1)
  return counts / x.shape[0]


def evaluate_linear(params: dict, x, y) -> tuple[float, float]:
  """Top-1 and top-5 accuracy (top-min(5, C)) of a probe from `train_linear_probe` on raw features.

  Args:
    params: `LinearProbeResult.params` (kernel, bias, mean, inv_std, l2).
    x: (n, d) raw features.
    y: (n,) int labels.

  Returns:
    (top1, top5) in [0, 1].
  """
  y = jnp.asarray(np.asarray(y, np.int32).reshape(-1))
  xn = _apply_normalizer(x, params)
  acc = grid_accuracy(params["kernel"][None], params["bias"][None], xn, y)[0]
  return float(acc[0]), float(acc[1])


def topk_accuracy(logits, labels, mask=None) -> tuple[float, float]:
  """Top-1 and top-min(5, C) accuracy of class scores (n, C) against labels (n,), in NumPy.

  Args:
    logits: (n, C) class scores.
    labels: (n,) int labels.
    mask: optional (n,) weights (1 real row, 0 padding); default all ones.
  """
  logits = np.asarray(logits)
  labels = np.asarray(labels).reshape(-1)
  mask = np.ones(len(labels)) if mask is None else np.asarray(mask, np.float64).reshape(-1)
  top = np.argsort(-logits, axis=-1)[:, : min(5, logits.shape[-1])]
  hits = top == labels[:, None]
  total = max(float(mask.sum()), 1.0)
  return float((hits[:, 0] * mask).sum()) / total, float((hits.any(-1) * mask).sum()) / total


def predict(params: dict, x) -> np.ndarray:
  """Class predictions (n,) of a probe from `train_linear_probe` on raw features x (n, d)."""
  x = np.asarray(x, np.float32)
  if bool(params["l2"]):
    x = x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)
  return np.argmax(
    ((x - params["mean"]) * params["inv_std"]) @ params["kernel"] + params["bias"], axis=-1
  )


def select(pairs: Sequence[tuple[float, float]], acc: np.ndarray) -> tuple[int, list]:
  """The best (lr, weight decay) pair by held-out top-1 and the grid's record.

  Args:
    pairs: the (lr, weight decay) of each head.
    acc: (len(pairs), 2) held-out top-1 / top-5 of each head.

  Returns:
    (index of the best pair: the first among ties, i.e. smallest lr then smallest wd in
    itertools.product order; one dict per pair: lr, weight_decay, val_top1, val_top5).
  """
  best = int(np.argmax(acc[:, 0]))
  grid = [
    {"lr": lr, "weight_decay": wd, "val_top1": float(a[0]), "val_top5": float(a[1])}
    for (lr, wd), a in zip(pairs, acc)
  ]
  return best, grid


def train_linear_probe(
  train_x,
  train_y,
  val_x,
  val_y,
  *,
  num_classes: int,
  lrs: Sequence[float] = (0.01, 0.1, 1.0),
  weight_decays: Sequence[float] = (0.0, 1e-4),
  epochs: int = 30,
  batch_size: int = 1024,
  seed: int = 0,
  optimizer: str = "sgd_nesterov",
  normalization: str = "standardize",
  refit: bool = True,
  between_epochs=None,
) -> LinearProbeResult:
  """Trains linear classifiers on a (lr, weight decay) grid and selects the best on the validation split.

  Args:
    train_x: (n, d) train features; train_y: (n,) int labels.
    val_x: (m, d) held-out features; val_y: (m,) labels (see `holdout_split`).
    num_classes: number of classes.
    lrs: peak learning rates (cosine decay to 0).
    weight_decays: L2 weight decay on the kernel; every (lr, wd) combination is trained.
    epochs: passes over the train features.
    batch_size: mini-batch size (capped at n).
    seed: shuffling seed.
    optimizer: 'sgd_nesterov' (momentum 0.9) or 'lars'.
    normalization: 'standardize' (train mean/std per dimension) or 'l2' (per row).
    refit: retrain the selected pair on train + val for the returned params.
    between_epochs: optional callable run between two epochs (of the grid and of the refit); an
      exception it raises (a preemption request) stops the probe there.

  Returns:
    LinearProbeResult.
  """
  if optimizer not in _OPTIMIZERS:
    raise ValueError(f"linear probe optimizer must be one of {_OPTIMIZERS}, got {optimizer!r}")
  if normalization not in _NORMALIZATIONS:
    raise ValueError(
      f"linear probe normalization must be one of {_NORMALIZATIONS}, got {normalization!r}"
    )
  if epochs < 1:
    raise ValueError(f"linear probe epochs must be >= 1, got {epochs}")
  train_x = np.asarray(train_x, np.float32)
  val_x = np.asarray(val_x, np.float32)
  train_y = np.asarray(train_y, np.int32).reshape(-1)
  val_y = np.asarray(val_y, np.int32).reshape(-1)
  if train_x.shape[0] != train_y.shape[0] or val_x.shape[0] != val_y.shape[0]:
    raise ValueError("linear probe: features and labels must have the same number of rows")
  pairs = list(itertools.product([float(v) for v in lrs], [float(v) for v in weight_decays]))
  if not pairs:
    raise ValueError("linear probe: lrs and weight_decays must be non-empty")
  lr_arr = jnp.asarray([p[0] for p in pairs], jnp.float32)
  wd_arr = jnp.asarray([p[1] for p in pairs], jnp.float32)
  key = jax.random.key(seed)
  fit = functools.partial(
    _fit_grid,
    num_classes=num_classes,
    epochs=int(epochs),
    optimizer=optimizer,
    between_epochs=between_epochs,
  )

  norm = _normalizer(train_x, normalization)
  xtr = _apply_normalizer(train_x, norm)
  grid_params = fit(
    xtr,
    jnp.asarray(train_y),
    lr_arr,
    wd_arr,
    key,
    batch_size=min(int(batch_size), train_x.shape[0]),
  )
  acc = grid_accuracy(
    grid_params["kernel"], grid_params["bias"], _apply_normalizer(val_x, norm), jnp.asarray(val_y)
  )
  best, grid = select(pairs, acc)

  if refit:
    all_x = np.concatenate([train_x, val_x])
    all_y = np.concatenate([train_y, val_y])
    norm = _normalizer(all_x, normalization)
    final = fit(
      _apply_normalizer(all_x, norm),
      jnp.asarray(all_y),
      lr_arr[best : best + 1],
      wd_arr[best : best + 1],
      key,
      batch_size=min(int(batch_size), all_x.shape[0]),
    )
    final = jax.tree.map(lambda a: a[0], final)
  else:
    final = jax.tree.map(lambda a: a[best], grid_params)
  params = {"kernel": np.asarray(final["kernel"]), "bias": np.asarray(final["bias"]), **norm}
  return LinearProbeResult(
    params=params,
    best_lr=pairs[best][0],
    best_weight_decay=pairs[best][1],
    val_top1=float(acc[best, 0]),
    val_top5=float(acc[best, 1]),
    grid=grid,
    normalization=normalization,
    refit=bool(refit),
  )
