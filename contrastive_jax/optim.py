"""Optimisers from config: LARS / SGD / AdamW, learning-rate scaling rule, linear warmup + cosine decay.

Weight decay (and LARS's trust ratio) apply to conv and dense kernels only, never to biases or
normalisation scales/offsets (SimCLR Appendix B.1; Goyal et al. 2017). LARS never adapts the
online linear probe either (`trust_ratio_exclude`): google-research/simclr tf2/model.py builds its
LARSOptimizer with exclude_from_layer_adaptation = ['batch_normalization', 'bias',
'head_supervised'], so the probe steps at the learning rate itself (with weight decay on its kernel,
which the official code adds to the loss); under the trust ratio its step would be ~1e-3 of that.

Parameter groups (`param_groups`): a subtree of the parameters may have its own base learning
rate, weight decay, or a fixed (unscheduled) rate: SimSiam's --fix-pred-lr (facebookresearch/simsiam
main_simsiam.py) is {'predictor': {'fixed_lr': True}}. LARS has solo-learn's `clip_lr`
(contrastive_jax/optim_lars.py) and AdamW a configurable `eps`.
"""

import functools
import math
from typing import Any
from collections.abc import Callable

import jax
import optax

from contrastive_jax import optim_lars

LR_RULES = ("linear", "sqrt", "none")
OPTIMIZERS = ("lars", "sgd", "adamw")
# Top-level parameter subtrees that LARS never adapts (see the module docstring).
TRUST_RATIO_EXCLUDE = ("probe",)
GROUP_FIELDS = ("base_lr", "weight_decay", "fixed_lr")
DEFAULT_GROUP = "default"


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


def _key_name(key) -> str:
  for attr in ("key", "name", "idx"):
    if hasattr(key, attr):
      return str(getattr(key, attr))
  return str(key)


def _leaf_name(path) -> str:
  return _key_name(path[-1] if path else None)


def weight_decay_mask(params: Any) -> Any:
  """True for leaves that get weight decay and LARS trust ratio: conv/dense kernels (ndim > 1).

  Biases and norm scales/offsets (ndim == 1, or named 'bias'/'scale') are excluded.
  """

  def keep(path, leaf):
    return jax.numpy.ndim(leaf) > 1 and _leaf_name(path) not in ("bias", "scale")

  return jax.tree_util.tree_map_with_path(keep, params)


def trust_ratio_mask(params: Any, exclude=TRUST_RATIO_EXCLUDE) -> Any:
  """weight_decay_mask, minus every leaf under a top-level key in `exclude` (the online probe)."""
  excluded = {str(e) for e in exclude}
  wd = weight_decay_mask(params)

  def keep(path, m):
    return bool(m) and not (path and _key_name(path[0]) in excluded)

  return jax.tree_util.tree_map_with_path(keep, wd)


def _get(cfg, name, default):
  value = getattr(cfg, name, default)
  return default if value is None else value


def param_groups(optim_cfg) -> dict[str, dict]:
  """`optim_cfg.param_groups` as {path: {field: value}}, checked; {} when unset.

  A path names a parameter subtree, '/'-separated from the top ('predictor', 'encoder/stage4').
  Fields: base_lr (that subtree's base rate, scaled by the same rule; default the optimiser's),
  weight_decay (default the optimiser's), fixed_lr (True: the peak rate at every step, no warm-up
  or decay).
  """
  raw = _get(optim_cfg, "param_groups", None) or {}
  if hasattr(raw, "to_dict"):
    raw = raw.to_dict()
  groups = {}
  for path, fields in raw.items():
    fields = dict(fields.to_dict() if hasattr(fields, "to_dict") else (fields or {}))
    unknown = sorted(set(fields) - set(GROUP_FIELDS))
    if unknown or not str(path).strip("/"):
      raise ValueError(
        f"config.optim.param_groups[{path!r}] = {fields}: a group is a parameter path "
        f"('predictor', 'encoder/stage4') mapped to fields among {GROUP_FIELDS}"
        + (f"; unknown: {unknown}" if unknown else "")
        + "."
      )
    groups[str(path).strip("/")] = {k: v for k, v in fields.items() if v is not None}
  return groups


def param_group_labels(params: Any, paths) -> Any:
  """The group of every leaf: the longest group path that prefixes the leaf's path, else 'default'.

  Raises:
    ValueError: a group path that matches no parameter (names the available top-level keys).
  """
  split = {p: tuple(p.split("/")) for p in paths}
  used = set()

  def label(path, _):
    names = tuple(_key_name(k) for k in path)
    best = None
    for p, parts in split.items():
      if names[: len(parts)] == parts and (best is None or len(parts) > len(split[best])):
        best = p
    used.add(best)
    return DEFAULT_GROUP if best is None else best

  labels = jax.tree_util.tree_map_with_path(label, params)
  unused = sorted(set(split) - used)
  if unused:
    tops = sorted({_key_name(k[0]) for k, _ in jax.tree_util.tree_flatten_with_path(params)[0]})
    raise ValueError(
      f"config.optim.param_groups: {unused} match no parameter; paths are '/'-separated keys "
      f"from the top of the parameters, whose top-level keys are {tops}."
    )
  return labels


def create_optimizer(
  optim_cfg,
  *,
  batch_size: int,
  total_steps: int,
  steps_per_epoch: int,
  train_size: int | None = None,
) -> tuple[optax.GradientTransformation, Callable]:
  """Builds the optimiser and its learning-rate schedule from `config.optim` (attribute access).

  Fields: name ('lars' | 'sgd' | 'adamw'), base_lr, lr_scaling ('linear' | 'sqrt' | 'none'), weight_decay,
  momentum (0.9), nesterov (False), warmup_epochs (float), trust_coefficient (0.001), end_lr_factor (0.0),
  b1 (0.9), b2 (0.999), eps (AdamW's epsilon, 1e-8), grad_clip_norm (0: off), clip_lr (False; LARS
  only: solo-learn's LARS, contrastive_jax/optim_lars.py), trust_ratio_exclude (('probe',): top-level
  subtrees LARS never adapts), param_groups ({}: see `param_groups`).

  Args:
    optim_cfg: config.optim (ml_collections.ConfigDict or any object with these attributes).
    batch_size: global batch size (for the scaling rule).
    total_steps: number of training steps (end of the cosine decay).
    steps_per_epoch: steps in one epoch (for warmup_epochs).
    train_size: examples per epoch; when given, the warm-up is the official
      int(warmup_epochs * train_size // batch_size) steps (google-research/simclr tf2/model.py
      WarmUpAndCosineDecay; BYOL's byol/configs/byol.py), else round(warmup_epochs * steps_per_epoch).

  Returns:
    (tx, schedule): the optax transformation and the step -> learning-rate function (for logging;
    the default group's).
  """
  name = _get(optim_cfg, "name", "lars")
  if name not in OPTIMIZERS:
    raise ValueError(
      f"Unknown optimizer {name!r} (config.optim.name); expected one of {OPTIMIZERS}."
    )
  clip_lr = bool(_get(optim_cfg, "clip_lr", False))
  if clip_lr and name != "lars":
    raise ValueError(
      f"config.optim.clip_lr=True clips LARS's layer-wise rate; config.optim.name={name!r} has "
      f"none. Set config.optim.name='lars' or config.optim.clip_lr=False."
    )
  rule = _get(optim_cfg, "lr_scaling", "linear")
  base_lr = float(_get(optim_cfg, "base_lr", 0.3))
  warmup_epochs = float(_get(optim_cfg, "warmup_epochs", 0.0))
  if train_size is not None:
    warmup_steps = int(warmup_epochs * int(train_size) // int(batch_size))
  else:
    warmup_steps = int(round(warmup_epochs * steps_per_epoch))
  end_factor = float(_get(optim_cfg, "end_lr_factor", 0.0))

  def schedule_for(group_base_lr: float, fixed: bool) -> optax.Schedule:
    peak = learning_rate(group_base_lr, batch_size, rule)
    if fixed:
      return optax.constant_schedule(peak)
    return create_schedule(peak, total_steps, warmup_steps, end_factor)

  wd = float(_get(optim_cfg, "weight_decay", 0.0))
  schedule = schedule_for(base_lr, False)
  groups = param_groups(optim_cfg)
  if not groups:
    tx = _base_optimizer(optim_cfg, name, schedule, wd, clip_lr)
  else:
    txs = {DEFAULT_GROUP: _base_optimizer(optim_cfg, name, schedule, wd, clip_lr)}
    for path, g in groups.items():
      sched = schedule_for(float(g.get("base_lr", base_lr)), bool(g.get("fixed_lr", False)))
      txs[path] = _base_optimizer(optim_cfg, name, sched, float(g.get("weight_decay", wd)), clip_lr)
    tx = optax.multi_transform(txs, lambda params: param_group_labels(params, list(groups)))

  clip = float(_get(optim_cfg, "grad_clip_norm", 0.0))
  if clip > 0:
    tx = optax.chain(optax.clip_by_global_norm(clip), tx)
  return tx, schedule


def _base_optimizer(optim_cfg, name, schedule, wd, clip_lr) -> optax.GradientTransformation:
  """One optimiser of the given kind at this schedule and weight decay (a group's, or the whole)."""
  momentum = float(_get(optim_cfg, "momentum", 0.9))
  nesterov = bool(_get(optim_cfg, "nesterov", False))
  if name == "lars":
    exclude = tuple(_get(optim_cfg, "trust_ratio_exclude", TRUST_RATIO_EXCLUDE))
    adapt = functools.partial(trust_ratio_mask, exclude=exclude)
    eta = float(_get(optim_cfg, "trust_coefficient", 0.001))
    if clip_lr:
      return optim_lars.solo_lars(
        schedule, weight_decay=wd, eta=eta, momentum=momentum, nesterov=nesterov, mask=adapt
      )
    return optax.lars(
      schedule,
      weight_decay=wd,
      weight_decay_mask=weight_decay_mask,
      trust_coefficient=eta,
      trust_ratio_mask=adapt,
      momentum=momentum,
      nesterov=nesterov,
    )
  if name == "sgd":
    return optax.chain(
      optax.add_decayed_weights(wd, mask=weight_decay_mask),
      optax.sgd(schedule, momentum=momentum or None, nesterov=nesterov),
    )
  return optax.adamw(
    schedule,
    b1=float(_get(optim_cfg, "b1", 0.9)),
    b2=float(_get(optim_cfg, "b2", 0.999)),
    eps=float(_get(optim_cfg, "eps", 1e-8)),
    weight_decay=wd,
    mask=weight_decay_mask,
  )
