"""SimCLR (Chen et al. 2020): two views, encoder, projection head, global NT-Xent.

Config (method_args): temperature (0.1 on ImageNet, 0.5 on CIFAR in the paper's Table B.7 search;
0.2 is a good CPU default), loss_tile_size (None = dense; an int = the tiled, memory-O(N) loss and
contrastive accuracy), loss_scale (1.0; 2.0 trains as the official code: google-research/simclr
tf2/objective.py returns `reduce_mean(loss_a + loss_b)`, twice the mean over the 2N anchors. Under
LARS that doubles the steps of BN parameters and biases, which have no trust ratio, and halves the
weight decay relative to the gradient of the kernels, so it is not a no-op). The logged `loss` is the
paper's mean over the 2N anchors whatever the scale, so curves compare across methods.

The loss is split into `embed_for_loss` (forward of some rows -> projections and probe logits) and
`loss_from_embeddings` (global NT-Xent + probe loss), so the gradient-cache step
(contrastive_jax/grad_cache.py, config.grad_cache_chunk > 0) can embed a large batch in chunks.
"""

import jax
import jax.numpy as jnp

from contrastive_jax import losses, losses_metrics
from contrastive_jax.methods import base


def create(config, num_classes: int) -> base.Method:
  args = config.method_args
  temperature = float(args.temperature)
  if temperature <= 0:
    raise ValueError(
      f"config.method_args.temperature={temperature} must be > 0 "
      f"(SimCLR uses 0.1 on ImageNet, 0.2-0.5 on CIFAR)."
    )
  tile = args.get("loss_tile_size", None)
  loss_scale = float(args.get("loss_scale", 1.0))
  if loss_scale <= 0:
    raise ValueError(
      f"config.method_args.loss_scale={loss_scale} must be > 0 (1.0: the paper's mean; 2.0: the "
      f"official code's loss_a + loss_b)."
    )
  # The official code concatenates the two views into one forward (tf2/model.py): one set of BN
  # statistics over both; method_args.per_view_bn=True normalises each view on its own instead.
  per_view = base.per_view_bn(config, False)
  net = base.build_net(config, num_classes)
  eval_net = base.build_net(config, num_classes, axis_name=None)

  def init(rng, images):
    v = base.init_net(eval_net, rng, images)
    return {**v, "extras": {}}

  def embed_for_loss(params, state, batch, rng):
    """Both views of these rows (one forward unless per_view_bn); leaves are (rows, ...)."""
    del rng
    n = batch["view1"].shape[0]
    views = (batch["view1"], batch["view2"])
    out, new_stats = base.apply_views(net, params, state.batch_stats, views, per_view=per_view)
    emb = {"z1": out["proj"][:n], "z2": out["proj"][n:]}
    if out["probe_logits"] is not None:
      emb["logits1"], emb["logits2"] = out["probe_logits"][:n], out["probe_logits"][n:]
    return emb, new_stats

  def loss_from_embeddings(emb, batch, state, rng, step):
    del state, rng, step
    z1, z2 = emb["z1"], emb["z2"]
    loss = losses.nt_xent(z1, z2, temperature, axis_name=base.AXIS, tile_size=tile)
    metrics = {
      "loss": loss,
      "contrastive_accuracy": losses_metrics.contrastive_accuracy(
        jax.lax.stop_gradient(z1), jax.lax.stop_gradient(z2), axis_name=base.AXIS, tile_size=tile
      ),
      "embedding_std": base.collapse_std(jax.lax.stop_gradient(z1)),
    }
    total = loss_scale * loss
    if "logits1" in emb:
      labels = jnp.concatenate([batch["label"], batch["label"]])
      p_loss, p_acc = base.probe_loss(jnp.concatenate([emb["logits1"], emb["logits2"]]), labels)
      metrics.update(probe_loss=p_loss, probe_accuracy=p_acc)
      total = total + p_loss
    return total, {"metrics": metrics, "extras_update": None}

  def loss_fn(params, state, batch, rng, step):
    emb, new_stats = embed_for_loss(params, state, batch, rng)
    loss, aux = loss_from_embeddings(emb, batch, state, rng, step)
    return loss, {**aux, "batch_stats": new_stats}

  def embed(state, images):
    return base.apply_eval(eval_net, state.params, state.batch_stats, images)["features"]

  return base.Method(
    name="simclr",
    init=init,
    loss_fn=loss_fn,
    embed=embed,
    embed_for_loss=embed_for_loss,
    loss_from_embeddings=loss_from_embeddings,
  )
