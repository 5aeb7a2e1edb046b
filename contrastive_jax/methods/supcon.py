"""Supervised contrastive learning (Khosla et al. 2020, "Supervised contrastive learning").

Two views per image through encoder -> projector -> L2 normalisation; every other view with the same
label, on any device, is a positive (L^sup_out, eq. 2 of the paper), all other views are negatives.
losses.supcon gathers the (n, 2, d) views of all devices, so the loss is the global-batch loss. The
representation is then evaluated (or used) with a linear classifier on the frozen encoder
(configs/linear_eval.py), as in the paper.

Config (method_args): temperature (0.1; the official code's default is 0.07), base_temperature
(0.07: the official SupConLoss multiplies the loss by temperature / base_temperature,
HobbitLong/SupContrast losses.py; None: no factor), per_view_bn (False: both views in one forward,
as the official code concatenates them), loss_tile_size is not used. The logged `loss` is the paper's
eq. 2 without the factor; the factor scales the objective (and the gradient) only.
"""

import jax
import jax.numpy as jnp

from contrastive_jax import losses
from contrastive_jax.methods import base


def create(config, num_classes: int) -> base.Method:
  temperature = float(config.method_args.temperature)
  if temperature <= 0:
    raise ValueError(f"config.method_args.temperature={temperature} must be > 0 (SupCon uses 0.1).")
  base_t = config.method_args.get("base_temperature", 0.07)
  if base_t is not None and float(base_t) <= 0:
    raise ValueError(
      f"config.method_args.base_temperature={base_t} must be > 0 (the official 0.07), or None "
      f"for the paper's unscaled loss."
    )
  base_t = None if base_t is None else float(base_t)
  per_view = base.per_view_bn(config, False)
  net = base.build_net(config, num_classes)
  eval_net = base.build_net(config, num_classes, axis_name=None)

  def init(rng, images):
    return {**base.init_net(eval_net, rng, images), "extras": {}}

  def loss_fn(params, state, batch, rng, step):
    del rng, step
    n = batch["view1"].shape[0]
    out, new_stats = base.apply_views(
      net, params, state.batch_stats, (batch["view1"], batch["view2"]), per_view=per_view
    )
    z = base.l2_normalize(out["proj"])
    views = jnp.stack([z[:n], z[n:]], axis=1)  # (n, 2, d)
    loss = losses.supcon(views, batch["label"], temperature, axis_name=base.AXIS)
    # The official temperature / base_temperature factor (losses.supcon's base_temperature) scales
    # the objective only; the paper's value is logged.
    objective = loss if base_t is None else loss * (temperature / base_t)
    labels = jnp.concatenate([batch["label"], batch["label"]])
    p_loss, p_acc = base.probe_loss(out["probe_logits"], labels)
    metrics = {
      "loss": loss,
      "probe_loss": p_loss,
      "probe_accuracy": p_acc,
      "embedding_std": base.collapse_std(jax.lax.stop_gradient(z[:n])),
    }
    return objective + p_loss, {"batch_stats": new_stats, "metrics": metrics, "extras_update": None}

  def embed(state, images):
    return base.apply_eval(eval_net, state.params, state.batch_stats, images)["features"]

  return base.Method(name="supcon", init=init, loss_fn=loss_fn, embed=embed)
