"""Per-method config defaults: the method_args each method reads and the head flags it needs.

The values are the CIFAR recipes' (solo-learn / the papers' CIFAR settings); an ImageNet recipe
overrides the few that differ (e.g. BYOL's momentum 0.996) through `configure(c, name, **args)`.
Widths of the projector and predictor belong to a recipe (they differ per dataset), except the
predictor of the shared CPU-sized runs (`cpu_predictor`).
"""

import ml_collections

# per_view_bn: each view through the network on its own (BN statistics per view), as the official
# BYOL, SimSiam and MoCo v3 code does; SimCLR, SupContrast and the triplet loss concatenate the views.
_DEFAULTS = {
  # loss_scale 1.0: the paper's mean; the paper presets set the official code's 2.0 (loss_a + loss_b).
  "simclr": dict(method_args=dict(loss_scale=1.0, per_view_bn=False)),
  # MoCo v2: Dense-ReLU-Dense projector without BN; a queue of negatives; EMA key encoder.
  "moco_v2": dict(
    head=dict(use_bn=False, last_bn=False),
    method_args=dict(temperature=0.2, queue_size=4096, momentum=0.99, momentum_cosine=False),
  ),
  # MoCo v3: BN on the projector's output, not on the predictor's; momentum 0.99 -> 1 (cosine).
  "moco_v3": dict(
    head=dict(last_bn=True),
    predictor=dict(last_bn=False),
    method_args=dict(temperature=0.2, momentum=0.99, momentum_final=1.0, per_view_bn=True),
  ),
  # BYOL: BN in the hidden layers of projector and predictor only; target tau 0.99 -> 1 (cosine).
  "byol": dict(
    head=dict(use_bn=True, last_bn=False),
    predictor=dict(use_bn=True, last_bn=False),
    method_args=dict(momentum=0.99, momentum_final=1.0, per_view_bn=True),
  ),
  # SimSiam: BN on every projector layer (output included), a bottleneck predictor without it.
  "simsiam": dict(
    head=dict(use_bn=True, last_bn=True),
    predictor=dict(use_bn=True, last_bn=False),
    method_args=dict(stop_gradient=True, per_view_bn=True),
  ),
  # SupCon: the official loss carries temperature / base_temperature (SupContrast losses.py).
  "supcon": dict(
    head=dict(use_bn=False, last_bn=False),
    method_args=dict(temperature=0.1, base_temperature=0.07, per_view_bn=False),
  ),
  # Triplet: the margin is in units of `distance` ('l2' | 'squared_l2').
  "triplet": dict(method_args=dict(margin=0.2, mining="hard", distance="l2", per_view_bn=False)),
}

# The predictor of the CPU-sized runs, beside their 256-64 projector (SimSiam keeps a bottleneck).
_CPU_PREDICTOR = {
  "byol": dict(hidden_dims=(256,), out_dim=64),
  "moco_v3": dict(hidden_dims=(256,), out_dim=64),
  "simsiam": dict(hidden_dims=(16,), out_dim=64),
}


def configure(c: ml_collections.ConfigDict, name: str, **method_args) -> ml_collections.ConfigDict:
  """Sets `c.method = name` and that method's defaults, then `method_args` on top.

  Args:
    c: a config from `base.base_config()`.
    name: a method module in contrastive_jax/methods/.
    **method_args: fields of c.method_args that this recipe sets differently.

  Returns:
    `c`, changed in place.
  """
  if name not in _DEFAULTS:
    raise ValueError(
      f"methods.configure: no defaults for method {name!r}; use one of {sorted(_DEFAULTS)}."
    )
  c.method = name
  d = _DEFAULTS[name]
  c.head.update(d.get("head", {}))
  c.predictor.update(d.get("predictor", {}))
  c.method_args.update(d.get("method_args", {}))
  c.method_args.update(method_args)
  return c


def cpu_predictor(c: ml_collections.ConfigDict) -> None:
  """Sizes the predictor of a CPU-sized run, for the methods that have one."""
  if c.method in _CPU_PREDICTOR:
    c.predictor.update(_CPU_PREDICTOR[c.method])
