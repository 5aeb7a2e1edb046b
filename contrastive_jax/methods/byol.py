"""BYOL (Grill et al. 2020, "Bootstrap your own latent").

Online network: encoder -> projector -> predictor; target network: encoder -> projector, an EMA of
the online ones (extras['target']) with tau annealed from `momentum` (0.996) to 1 on a half cosine
over the
run: tau_k = 1 - (1 - tau_base) (cos(pi k / K) + 1) / 2 (Sec. 3.2). Both networks run in train mode
with BN synchronised over the mesh; the target's outputs are stop-gradient. Symmetric normalised
regression:

    L = ||p1/|p1| - t2/|t2|||^2 + ||p2/|p2| - t1/|t1|||^2 = (2 - 2 cos(p1, t2)) + (2 - 2 cos(p2, t1)),

averaged over the global batch.

Each view goes through the online and the target network on its own (per_view_bn=True, the
official default: byol_experiment.py applies the network once per view), so BatchNorm normalises
each view with its own statistics, synchronised over the mesh (the official cross_replica_axis).

Config (method_args): momentum (tau_base: 0.99 for 100-300 epochs, 0.996 for 1000, the official
_EMA_PRESETS of byol/configs/byol.py; 0.99 on CIFAR in solo-learn), momentum_final (1.0),
per_view_bn (True; False: both views in one forward).
"""

import jax
import jax.numpy as jnp

from contrastive_jax import losses
from contrastive_jax.methods import base


def regression_loss(p: jax.Array, t: jax.Array) -> jax.Array:
  """Mean over this device's rows of 2 - 2 cos(p, t) (BYOL eq. 2); t carries no gradient."""
  return 2.0 * (1.0 + losses.negative_cosine(p, jax.lax.stop_gradient(t)))


def create(config, num_classes: int, total_steps: int | None = None) -> base.Method:
  args = config.method_args
  base_m = float(args.get("momentum", 0.996))
  final_m = float(args.get("momentum_final", 1.0))
  if not 0.0 <= base_m <= 1.0:
    raise ValueError(f"config.method_args.momentum={base_m} must be in [0, 1] (BYOL uses 0.996).")
  total = base.resolve_total_steps(config, total_steps)
  base.check_predictor_dims(config)

  per_view = base.per_view_bn(config, True)
  net = base.build_net(config, num_classes, predictor=True)
  eval_net = base.build_net(config, num_classes, predictor=True, axis_name=None)
  target_net = base.build_target_net(config)

  def init(rng, images):
    v = base.init_net(eval_net, rng, images)
    return {**v, "extras": {"target": base.init_target(v)}}

  def loss_fn(params, state, batch, rng, step):
    del rng, step
    n = batch["view1"].shape[0]
    views = (batch["view1"], batch["view2"])
    out, new_stats = base.apply_views(net, params, state.batch_stats, views, per_view=per_view)
    t_out, t_stats = base.apply_target_views(
      target_net, state.extras["target"], views, per_view=per_view
    )
    p, t = out["pred"], t_out["proj"]
    # Equal shards: the mean of the per-device means is the global-batch mean.
    loss = base.global_mean(regression_loss(p[:n], t[n:]) + regression_loss(p[n:], t[:n]))
    labels = jnp.concatenate([batch["label"], batch["label"]])
    p_loss, p_acc = base.probe_loss(out["probe_logits"], labels)
    metrics = {
      "loss": loss,
      "probe_loss": p_loss,
      "probe_accuracy": p_acc,
      "embedding_std": base.collapse_std(jax.lax.stop_gradient(out["proj"][:n])),
    }
    return loss + p_loss, {
      "batch_stats": new_stats,
      "metrics": metrics,
      "extras_update": {"target_batch_stats": t_stats},
    }

  def post_update(extras, new_params, update, step):
    tau = base.cosine_momentum(base_m, step, total, final_m)
    return {
      "target": base.update_target(extras["target"], new_params, update["target_batch_stats"], tau)
    }

  def embed(state, images):
    return base.apply_eval(eval_net, state.params, state.batch_stats, images)["features"]

  return base.Method(name="byol", init=init, loss_fn=loss_fn, embed=embed, post_update=post_update)
