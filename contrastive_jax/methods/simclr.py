"""SimCLR (Chen et al. 2020): two views, encoder, projection head, global NT-Xent.

Config (method_args): temperature (0.1 on ImageNet, 0.5 on CIFAR in the paper's Table B.7 search;
0.2 is a good CPU default), loss_tile_size (None = dense; an int = the tiled, memory-O(N) loss).
"""
import jax

from contrastive_jax import losses
from contrastive_jax.methods import base


def create(config, num_classes: int) -> base.Method:
  args = config.method_args
  temperature = float(args.temperature)
  if temperature <= 0:
    raise ValueError(f"config.method_args.temperature={temperature} must be > 0 "
                     f"(SimCLR uses 0.1 on ImageNet, 0.2-0.5 on CIFAR).")
  tile = args.get("loss_tile_size", None)
  net = base.build_net(config, num_classes)
  eval_net = base.build_net(config, num_classes, axis_name=None)

  def init(rng, images):
    v = base.init_net(eval_net, rng, images)
    return {**v, "extras": {}}

  def loss_fn(params, state, batch, rng, step):
    del rng, step
    x, n = base.two_views(batch)
    out, new_stats = base.apply_train(net, params, state.batch_stats, x)
    z1, z2 = out["proj"][:n], out["proj"][n:]
    loss = losses.nt_xent(z1, z2, temperature, axis_name=base.AXIS, tile_size=tile)
    labels = jax.numpy.concatenate([batch["label"], batch["label"]])
    p_loss, p_acc = base.probe_loss(out["probe_logits"], labels)
    metrics = {
        "loss": loss,
        "contrastive_accuracy": losses.contrastive_accuracy(
            jax.lax.stop_gradient(z1), jax.lax.stop_gradient(z2), axis_name=base.AXIS),
        "probe_loss": p_loss, "probe_accuracy": p_acc,
        "embedding_std": base.collapse_std(jax.lax.stop_gradient(z1)),
    }
    return loss + p_loss, {"batch_stats": new_stats, "metrics": metrics, "extras_update": None}

  def embed(state, images):
    return base.apply_eval(eval_net, state.params, state.batch_stats, images)["features"]

  return base.Method(name="simclr", init=init, loss_fn=loss_fn, embed=embed)
