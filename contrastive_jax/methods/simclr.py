"""SimCLR (Chen et al. 2020): two views, encoder, projection head, global NT-Xent.

Config (method_args): temperature (0.1 on ImageNet, 0.5 on CIFAR in the paper's Table B.7 search;
0.2 is a good CPU default), loss_tile_size (None = dense; an int = the tiled, memory-O(N) loss).

The loss is split into `embed_for_loss` (forward of some rows -> projections and probe logits) and
`loss_from_embeddings` (global NT-Xent + probe loss), so the gradient-cache step
(contrastive_jax/grad_cache.py, config.grad_cache_chunk > 0) can embed a large batch in chunks.
"""

import jax
import jax.numpy as jnp

from contrastive_jax import losses
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
  net = base.build_net(config, num_classes)
  eval_net = base.build_net(config, num_classes, axis_name=None)

  def init(rng, images):
    v = base.init_net(eval_net, rng, images)
    return {**v, "extras": {}}

  def embed_for_loss(params, state, batch, rng):
    """Both views of these rows in one forward (one set of BN statistics); leaves are (rows, ...)."""
    del rng
    x, n = base.two_views(batch)
    out, new_stats = base.apply_train(net, params, state.batch_stats, x)
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
      "contrastive_accuracy": losses.contrastive_accuracy(
        jax.lax.stop_gradient(z1), jax.lax.stop_gradient(z2), axis_name=base.AXIS
      ),
      "embedding_std": base.collapse_std(jax.lax.stop_gradient(z1)),
    }
    total = loss
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
