"""Triplet loss with online mining (Schroff et al. 2015, FaceNet; Hermans et al. 2017, batch-hard).

Both views of every image go through encoder -> projector -> L2 normalisation; labels are identities
(the two views of an image share its label, so every anchor has a positive). For each anchor of the
GLOBAL batch (losses.batch_hard_triplet gathers all devices) the loss is

    max(0, d(a, p) - d(a, n) + margin)

with 'hard' mining (hardest positive, hardest negative: Hermans et al.) or 'semi_hard' (FaceNet: the
closest negative farther than the positive), averaged over anchors.

Config (method_args): margin (0.2, FaceNet), mining ('hard' | 'semi_hard').
"""

import jax
import jax.numpy as jnp

from contrastive_jax import losses
from contrastive_jax.methods import base

MINING = ("hard", "semi_hard")


def create(config, num_classes: int) -> base.Method:
  args = config.method_args
  margin = float(args.get("margin", 0.2))
  mining = str(args.get("mining", "hard"))
  if mining not in MINING:
    raise ValueError(f"config.method_args.mining={mining!r}: choose one of {MINING}.")
  if margin < 0:
    raise ValueError(f"config.method_args.margin={margin} must be >= 0 (FaceNet uses 0.2).")
  net = base.build_net(config, num_classes)
  eval_net = base.build_net(config, num_classes, axis_name=None)

  def init(rng, images):
    return {**base.init_net(eval_net, rng, images), "extras": {}}

  def loss_fn(params, state, batch, rng, step):
    del rng, step
    x, n = base.two_views(batch)
    out, new_stats = base.apply_train(net, params, state.batch_stats, x)
    e = base.l2_normalize(out["proj"])
    labels = jnp.concatenate([batch["label"], batch["label"]])
    loss = losses.batch_hard_triplet(e, labels, margin, axis_name=base.AXIS, mining=mining)
    p_loss, p_acc = base.probe_loss(out["probe_logits"], labels)
    metrics = {
      "loss": loss,
      "probe_loss": p_loss,
      "probe_accuracy": p_acc,
      "embedding_std": base.collapse_std(jax.lax.stop_gradient(e[:n])),
    }
    return loss + p_loss, {"batch_stats": new_stats, "metrics": metrics, "extras_update": None}

  def embed(state, images):
    return base.apply_eval(eval_net, state.params, state.batch_stats, images)["features"]

  return base.Method(name="triplet", init=init, loss_fn=loss_fn, embed=embed)
