"""Optimisers from config: LARS / SGD / AdamW, learning-rate scaling rule, linear warmup + cosine decay.

Weight decay (and LARS's trust ratio) apply to conv and dense kernels only, never to biases or
normalisation scales/offsets (SimCLR Appendix B.1; Goyal et al. 2017).
"""

import math
from typing import Any
from collections.abc import Callable

import jax
import optax

LR_RULES = ("linear", "sqrt", "none")
OPTIMIZERS = ("lars", "sgd", "adamw")


def learning_rate(base_lr: float, batch_size: int, rule: str) -> float:
  """Peak learning rate from the base rate and the global batch size.

  Args:
    base_lr: config.optim.base_lr.
    batch_size: global batch size.
    rule: 'linear' (base * B / 256, Goyal et al. 2017), 'sqrt' (base * sqrt(B), SimCLR Appendix B.1
      uses 0.075 * sqrt(B)) or 'none' (base).

  Returns:
    The peak learning rate.
  """
  if rule == "linear":
    return base_lr * batch_size / 256.0
  if rule == "sqrt":
    return base_lr * math.sqrt(batch_size)
  if rule == "none":
    return float(base_lr)
  raise ValueError(
    f"Unknown learning-rate scaling rule {rule!r} (config.optim.lr_scaling); "
    f"expected one of {LR_RULES}."
  )


def create_schedule(
  peak_lr: float, total_steps: int, warmup_steps: int, end_lr_factor: float = 0.0
) -> optax.Schedule:
  """Linear warmup from 0 to `peak_lr` over `warmup_steps`, then cosine decay to `end_lr_factor * peak_lr`
  at `total_steps`."""
  total_steps = max(int(total_steps), 1)
  warmup_steps = min(max(int(warmup_steps), 0), total_steps - 1)
  return optax.warmup_cosine_decay_schedule(
    init_value=0.0,
    peak_value=peak_lr,
    warmup_steps=warmup_steps,
    decay_steps=total_steps,
    end_value=peak_lr * end_lr_factor,
  )


def _leaf_name(path) -> str:
  key = path[-1] if path else None
  for attr in ("key", "name", "idx"):
    if hasattr(key, attr):
      return str(getattr(key, attr))
  return str(key)


def weight_decay_mask(params: Any) -> Any:
  """True for leaves that get weight decay and LARS trust ratio: conv/dense kernels (ndim > 1).

  Biases and norm scales/offsets (ndim == 1, or named 'bias'/'scale') are excluded.
  """

  def keep(path, leaf):
    return jax.numpy.ndim(leaf) > 1 and _leaf_name(path) not in ("bias", "scale")

  return jax.tree_util.tree_map_with_path(keep, params)


def _get(cfg, name, default):
  value = getattr(cfg, name, default)
  return default if value is None else value


def create_optimizer(
  optim_cfg, *, batch_size: int, total_steps: int, steps_per_epoch: int
) -> tuple[optax.GradientTransformation, Callable]:
  """Builds the optimiser and its learning-rate schedule from `config.optim` (attribute access).

  Fields: name ('lars' | 'sgd' | 'adamw'), base_lr, lr_scaling ('linear' | 'sqrt' | 'none'), weight_decay,
  momentum (0.9), nesterov (False), warmup_epochs (float), trust_coefficient (0.001), end_lr_factor (0.0),
  b1 (0.9), b2 (0.999), grad_clip_norm (0: off).

  Args:
    optim_cfg: config.optim (ml_collections.ConfigDict or any object with these attributes).
    batch_size: global batch size (for the scaling rule).
    total_steps: number of training steps (end of the cosine decay).
    steps_per_epoch: steps in one epoch (for warmup_epochs).

  Returns:
    (tx, schedule): the optax transformation and the step -> learning-rate function (for logging).
  """
  name = _get(optim_cfg, "name", "lars")
  if name not in OPTIMIZERS:
    raise ValueError(
      f"Unknown optimizer {name!r} (config.optim.name); expected one of {OPTIMIZERS}."
    )
  peak_lr = learning_rate(
    float(_get(optim_cfg, "base_lr", 0.3)), batch_size, _get(optim_cfg, "lr_scaling", "linear")
  )
  warmup_steps = int(round(float(_get(optim_cfg, "warmup_epochs", 0.0)) * steps_per_epoch))
  schedule = create_schedule(
    peak_lr, total_steps, warmup_steps, float(_get(optim_cfg, "end_lr_factor", 0.0))
  )
  wd = float(_get(optim_cfg, "weight_decay", 0.0))
  momentum = float(_get(optim_cfg, "momentum", 0.9))
  nesterov = bool(_get(optim_cfg, "nesterov", False))

  if name == "lars":
    tx = optax.lars(
      schedule,
      weight_decay=wd,
      weight_decay_mask=weight_decay_mask,
      trust_coefficient=float(_get(optim_cfg, "trust_coefficient", 0.001)),
      trust_ratio_mask=weight_decay_mask,
      momentum=momentum,
      nesterov=nesterov,
    )
  elif name == "sgd":
    tx = optax.chain(
      optax.add_decayed_weights(wd, mask=weight_decay_mask),
      optax.sgd(schedule, momentum=momentum or None, nesterov=nesterov),
    )
  else:
    tx = optax.adamw(
      schedule,
      b1=float(_get(optim_cfg, "b1", 0.9)),
      b2=float(_get(optim_cfg, "b2", 0.999)),
      weight_decay=wd,
      mask=weight_decay_mask,
    )

  clip = float(_get(optim_cfg, "grad_clip_norm", 0.0))
  if clip > 0:
    tx = optax.chain(optax.clip_by_global_norm(clip), tx)
  return tx, schedule
