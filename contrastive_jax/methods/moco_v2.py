"""MoCo v2 (He et al. 2020; Chen et al. 2020, "Improved baselines with momentum contrastive learning").

The query encoder (encoder + MLP projector) sees view1; the momentum key encoder (an EMA of the
query encoder and projector, in extras['target']) sees view2 in train mode. InfoNCE contrasts each
query with its own key against a queue of K negative keys (extras['queue'], L2-normalised, (K, d)).
After every step the keys of the WHOLE global batch, gathered in device order, replace the oldest B
entries of the queue (a ring buffer with pointer extras['queue_ptr']), so the queue always holds the
keys of the last K / B steps.

MoCo shuffles BN across GPUs so that a query and its key never share per-GPU batch statistics; here
BatchNorm is synchronised over the whole mesh in both encoders, which removes that leak the same way
(the statistics are the global batch's, as in SimCLR and MoCo v3).

Config (method_args): temperature (0.2), queue_size (K; multiple of batch_size), momentum (0.99
CIFAR, 0.999 ImageNet), momentum_cosine (False: constant; True: cosine from momentum to 1 over the
run).
"""

import jax
import jax.numpy as jnp

from contrastive_jax import losses
from contrastive_jax.methods import base


def create(config, num_classes: int, total_steps: int | None = None) -> base.Method:
  args = config.method_args
  temperature = float(args.temperature)
  if temperature <= 0:
    raise ValueError(
      f"config.method_args.temperature={temperature} must be > 0 (MoCo v2 uses 0.2)."
    )
  queue_size = int(args.get("queue_size", 4096))
  batch = int(config.batch_size)
  if queue_size <= 0 or queue_size % batch:
    raise ValueError(
      f"config.method_args.queue_size={queue_size} must be a positive multiple of "
      f"config.batch_size={batch} (whole batches are enqueued); e.g. "
      f"{max(1, queue_size // batch) * batch}."
    )
  base_m = float(args.get("momentum", 0.99))
  final_m = 1.0 if args.get("momentum_cosine", False) else base_m
  total = base.resolve_total_steps(config, total_steps)
  out_dim = int(config.head.out_dim)

  net = base.build_net(config, num_classes)
  eval_net = base.build_net(config, num_classes, axis_name=None)
  target_net = base.build_target_net(config)

  def init(rng, images):
    net_rng, queue_rng = jax.random.split(rng)
    v = base.init_net(eval_net, net_rng, images)
    queue = base.l2_normalize(jax.random.normal(queue_rng, (queue_size, out_dim), jnp.float32))
    extras = {"target": base.init_target(v), "queue": queue, "queue_ptr": jnp.zeros((), jnp.int32)}
    return {**v, "extras": extras}

  def loss_fn(params, state, batch, rng, step):
    del rng, step
    out, new_stats = base.apply_train(net, params, state.batch_stats, batch["view1"])
    q = base.l2_normalize(out["proj"])
    t_out, t_stats = base.apply_target(target_net, state.extras["target"], batch["view2"])
    k = base.l2_normalize(t_out["proj"])
    queue = jax.lax.stop_gradient(state.extras["queue"])
    loss = losses.info_nce(q, k, temperature, negatives=queue, axis_name=base.AXIS)
    p_loss, p_acc = base.probe_loss(out["probe_logits"], batch["label"])
    qs = jax.lax.stop_gradient(q)
    pos = jnp.sum(qs * k, -1)
    hit = (pos > jnp.max(qs @ queue.T, -1)).astype(jnp.float32)
    metrics = {
      "loss": loss,
      "contrastive_accuracy": base.global_mean(jnp.mean(hit)),
      "probe_loss": p_loss,
      "probe_accuracy": p_acc,
      "embedding_std": base.collapse_std(qs),
    }
    # The keys of every device, in device order, device-invariant (they go into the replicated
    # queue).
    keys = jax.lax.all_gather(k, base.AXIS, tiled=True, to="invarying")
    return loss + p_loss, {
      "batch_stats": new_stats,
      "metrics": metrics,
      "extras_update": {"keys": keys, "target_batch_stats": t_stats},
    }

  def post_update(extras, new_params, update, step):
    m = base.cosine_momentum(base_m, step, total, final_m)
    target = base.update_target(extras["target"], new_params, update["target_batch_stats"], m)
    ptr = extras["queue_ptr"]
    keys = update["keys"].astype(extras["queue"].dtype)
    queue = jax.lax.dynamic_update_slice(extras["queue"], keys, (ptr, jnp.zeros_like(ptr)))
    return {"target": target, "queue": queue, "queue_ptr": (ptr + keys.shape[0]) % queue_size}

  def embed(state, images):
    return base.apply_eval(eval_net, state.params, state.batch_stats, images)["features"]

  return base.Method(
    name="moco_v2", init=init, loss_fn=loss_fn, embed=embed, post_update=post_update
  )
