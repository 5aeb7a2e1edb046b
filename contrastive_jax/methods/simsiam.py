"""SimSiam (Chen & He 2021, "Exploring simple Siamese representation learning").

One network: encoder -> projector (BN on every layer, output included) -> bottleneck predictor. Loss

    L = D(p1, sg(z2)) / 2 + D(p2, sg(z1)) / 2,   D = negative cosine,

averaged over the global batch. The stop-gradient sg on the projector branch is what prevents
collapse (the paper's Fig. 2); `method_args.stop_gradient=False` reproduces that ablation
(embedding_std then falls towards 0). No EMA, no negatives.

Each view goes through the network on its own (per_view_bn=True, the official default:
simsiam/builder.py calls encoder(x1) and encoder(x2) under SyncBatchNorm), so BN normalises each
view with its own statistics, synchronised over the mesh.

Config (method_args): stop_gradient (True), per_view_bn (True; False: one forward of both views).
The official fixed predictor learning rate (--fix-pred-lr) is an optimiser parameter group:
config.optim.param_groups = {'predictor': {'fixed_lr': True}} (see contrastive_jax/optim.py).
"""

import jax
import jax.numpy as jnp

from contrastive_jax import losses
from contrastive_jax.methods import base


def create(config, num_classes: int) -> base.Method:
  stop_grad = bool(config.method_args.get("stop_gradient", True))
  sg = jax.lax.stop_gradient if stop_grad else (lambda x: x)
  base.check_predictor_dims(config)
  per_view = base.per_view_bn(config, True)
  net = base.build_net(config, num_classes, predictor=True)
  eval_net = base.build_net(config, num_classes, predictor=True, axis_name=None)

  def init(rng, images):
    return {**base.init_net(eval_net, rng, images), "extras": {}}

  def loss_fn(params, state, batch, rng, step):
    del rng, step
    n = batch["view1"].shape[0]
    views = (batch["view1"], batch["view2"])
    out, new_stats = base.apply_views(net, params, state.batch_stats, views, per_view=per_view)
    p, z = out["pred"], out["proj"]
    local = 0.5 * (
      losses.negative_cosine(p[:n], sg(z[n:])) + losses.negative_cosine(p[n:], sg(z[:n]))
    )
    loss = base.global_mean(local)
    labels = jnp.concatenate([batch["label"], batch["label"]])
    p_loss, p_acc = base.probe_loss(out["probe_logits"], labels)
    metrics = {
      "loss": loss,
      "probe_loss": p_loss,
      "probe_accuracy": p_acc,
      "embedding_std": base.collapse_std(jax.lax.stop_gradient(z[:n])),
    }
    return loss + p_loss, {"batch_stats": new_stats, "metrics": metrics, "extras_update": None}

  def embed(state, images):
    return base.apply_eval(eval_net, state.params, state.batch_stats, images)["features"]

  return base.Method(name="simsiam", init=init, loss_fn=loss_fn, embed=embed)
