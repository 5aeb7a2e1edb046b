"""MoCo v3 (Chen, Xie & He 2021, "An empirical study of training self-supervised vision transformers").

Online: encoder -> projector -> predictor; momentum target: EMA of encoder + projector
(extras['target']), train-mode forward with BN synchronised over the mesh. No queue: the keys of the
whole global batch are the candidates (in-batch negatives across all devices). Symmetric loss

    L = 2 tau * (ctr(q1, k2) + ctr(q2, k1)),   ctr = InfoNCE over the global batch,

with the 2 tau factor of the official implementation (it keeps the gradient scale independent of
tau). The momentum follows a half cosine from `momentum` (0.99) to 1 over the run.

Each view goes through the online and the momentum network on its own (per_view_bn=True, the
official default: moco/builder.py calls base_encoder(x1), base_encoder(x2) under SyncBatchNorm), so
BN normalises each view with its own statistics, synchronised over the mesh.

Config (method_args): temperature (0.2 CIFAR / ViT; 1.0 for ResNet-50 on ImageNet in the official
recipe), momentum (0.99), momentum_final (1.0), loss_tile_size (None: dense; int: tiled InfoNCE and
contrastive accuracy), per_view_bn (True; False: one forward of both views).
"""

import jax
import jax.numpy as jnp

from contrastive_jax import losses, losses_metrics
from contrastive_jax.methods import base


def create(config, num_classes: int, total_steps: int | None = None) -> base.Method:
  args = config.method_args
  temperature = float(args.temperature)
  if temperature <= 0:
    raise ValueError(
      f"config.method_args.temperature={temperature} must be > 0 "
      f"(MoCo v3 uses 0.2 on CIFAR/ViT, 1.0 for ResNet-50)."
    )
  base_m = float(args.get("momentum", 0.99))
  final_m = float(args.get("momentum_final", 1.0))
  tile = args.get("loss_tile_size", None)
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
    q = base.l2_normalize(out["pred"])
    k = base.l2_normalize(t_out["proj"])
    q1, q2, k1, k2 = q[:n], q[n:], k[:n], k[n:]
    ctr = lambda a, b: losses.info_nce(a, b, temperature, axis_name=base.AXIS, tile_size=tile)
    loss = 2.0 * temperature * (ctr(q1, k2) + ctr(q2, k1))
    labels = jnp.concatenate([batch["label"], batch["label"]])
    p_loss, p_acc = base.probe_loss(out["probe_logits"], labels)
    q1s = jax.lax.stop_gradient(q1)
    metrics = {
      "loss": loss,
      "contrastive_accuracy": losses_metrics.contrastive_accuracy(
        q1s, k2, axis_name=base.AXIS, tile_size=tile
      ),
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
    m = base.cosine_momentum(base_m, step, total, final_m)
    return {
      "target": base.update_target(extras["target"], new_params, update["target_batch_stats"], m)
    }

  def embed(state, images):
    return base.apply_eval(eval_net, state.params, state.batch_stats, images)["features"]

  return base.Method(
    name="moco_v3", init=init, loss_fn=loss_fn, embed=embed, post_update=post_update
  )
