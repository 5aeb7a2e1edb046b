"""Triplet loss with online mining (Schroff et al. 2015, FaceNet; Hermans et al. 2017, batch-hard).

Both views of every image go through encoder -> projector -> L2 normalisation; labels are identities
(the two views of an image share its label, so every anchor has a positive). Over the GLOBAL batch
(the losses gather all devices):

  'hard'       losses_triplet.batch_hard_triplet (Hermans et al.): per anchor, its farthest
               positive and its closest negative, max(0, d_ap - d_an + margin), averaged over
               anchors.
  'semi_hard'  losses_triplet.semi_hard_triplet, TensorFlow Addons' triplet_semihard_loss
               (tensorflow_addons/losses/triplet.py, FaceNet Sec. 3.2): EVERY anchor-positive pair,
               with the closest negative farther than the positive, or the farthest negative when
               there is none; averaged over the pairs.

The margin is in the units of `distance`: 'l2' (Euclidean; the reference's default 'L2' and Hermans
et al.'s) or 'squared_l2' (FaceNet's eq. 1, whose margin 0.2 is a squared distance).

Config (method_args): margin (0.2), mining ('hard' | 'semi_hard'), distance ('l2' | 'squared_l2'),
per_view_bn (False: both views in one forward).
"""

import jax
import jax.numpy as jnp

from contrastive_jax import losses_triplet
from contrastive_jax.methods import base

MINING = ("hard", "semi_hard")
DISTANCES = ("l2", "squared_l2")


def create(config, num_classes: int) -> base.Method:
  args = config.method_args
  margin = float(args.get("margin", 0.2))
  mining = str(args.get("mining", "hard"))
  distance = str(args.get("distance", "l2"))
  if mining not in MINING:
    raise ValueError(f"config.method_args.mining={mining!r}: choose one of {MINING}.")
  if distance not in DISTANCES:
    raise ValueError(
      f"config.method_args.distance={distance!r}: choose one of {DISTANCES} (the margin is in "
      f"these units)."
    )
  if margin < 0:
    raise ValueError(f"config.method_args.margin={margin} must be >= 0 (FaceNet uses 0.2).")
  squared = distance == "squared_l2"
  per_view = base.per_view_bn(config, False)
  net = base.build_net(config, num_classes)
  eval_net = base.build_net(config, num_classes, axis_name=None)

  def triplet_loss(e, labels):
    if mining == "hard":
      return losses_triplet.batch_hard_triplet(
        e, labels, margin, axis_name=base.AXIS, mining="hard", squared=squared
      )
    return losses_triplet.semi_hard_triplet(e, labels, margin, axis_name=base.AXIS, squared=squared)

  def init(rng, images):
    return {**base.init_net(eval_net, rng, images), "extras": {}}

  def loss_fn(params, state, batch, rng, step):
    del rng, step
    n = batch["view1"].shape[0]
    out, new_stats = base.apply_views(
      net, params, state.batch_stats, (batch["view1"], batch["view2"]), per_view=per_view
    )
    e = base.l2_normalize(out["proj"])
    labels = jnp.concatenate([batch["label"], batch["label"]])
    loss = triplet_loss(e, labels)
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
