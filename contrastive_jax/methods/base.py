"""The method plug-in API and the pieces most methods share.

A method is a module in this package with `create(config, num_classes) -> Method`; a method whose
schedule needs the run length (EMA momentum annealed to 1) also takes `total_steps=None` (the
trainer passes the resolved step count; None when only embedding, e.g. from an evaluator). The
trainer knows nothing else about it:

  init(rng, images) -> {'params', 'batch_stats', 'extras'}
  loss_fn(params, state, batch, rng, step) -> (loss, aux)
      Runs inside shard_map on one device's shard (axis 'data'). `loss` is the GLOBAL loss
      (the same value on every device, built with collectives); under shard_map(check_vma=True)
      its gradient w.r.t. the replicated params is then exactly the global-batch gradient.
      aux: {'batch_stats': new stats, 'metrics': {name: global scalar},
            'extras_update': whatever post_update needs (or None)}.
  post_update(extras, new_params, extras_update, step) -> new extras   (EMA targets, queues)
      or Updated(params, extras) when it also changes parameters after the optimiser (CLIP clamps
      its temperature there).
  embed(state_like, images) -> features before the projection head (eval mode, no collectives).

Declared, with defaults for image methods (the trainer and evaluators read these, never the name):
  encoder_path  where the encoder's parameters (and BN statistics) live in params: ('encoder',).
  projector_path  where the projection head lives: ('projector',) (fine-tuning may keep its first
                layer).
  batch_keys    what loss_fn reads from a pre-training batch: ('view1', 'view2', 'label');
                an image-text method declares ('image', 'tokens').
  evaluators    the in-run evaluations (functions of protocols/monitors.py): ('knn',);
                an image-text method declares ('zero_shot',).
  joint_image, joint_text  an image-text method's embeddings in the joint space (zero-shot).
"""

import dataclasses
from typing import Any, NamedTuple
from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from contrastive_jax import losses
from contrastive_jax.models import heads, networks, resnet, vit
from contrastive_jax.sharding import DATA_AXIS as AXIS


class Updated(NamedTuple):
  """What post_update returns when it changes parameters as well as extras."""

  params: Any
  extras: Any


@dataclasses.dataclass(frozen=True)
class Method:
  name: str
  init: Callable[..., dict]
  loss_fn: Callable[..., tuple[jax.Array, dict]]
  embed: Callable[..., jax.Array]
  post_update: Callable[..., Any] = lambda extras, params, update, step: extras
  # The encoder's parameters (and BN statistics) live under this path of params (read by
  # evaluation, fine-tuning and export through encoder_subtree).
  encoder_path: tuple[str, ...] = ("encoder",)
  # Where the projection head lives in params (fine-tuning from its first layer, SimCLRv2).
  projector_path: tuple[str, ...] = ("projector",)
  # Keys of a pre-training batch that loss_fn reads (the data source must provide them).
  batch_keys: tuple[str, ...] = ("view1", "view2", "label")
  # In-run evaluations, by function name in contrastive_jax/protocols/monitors.py.
  evaluators: tuple[str, ...] = ("knn",)
  # Optional split of loss_fn for the gradient-cache step (contrastive_jax/grad_cache.py, used when
  # config.grad_cache_chunk > 0); both None = the method does not support it. embed_for_loss(params,
  # state, batch, rng) -> (embeddings, new_batch_stats) Train-mode forward of a CHUNK of this
  # device's rows (same dict keys as the batch); every leaf of `embeddings` has the chunk's rows as
  # its leading axis (row order kept), so that concatenating the chunks gives the embeddings of the
  # whole shard. No collectives other than synchronised BatchNorm. loss_from_embeddings(embeddings,
  # batch, state, rng, step) -> (loss, aux) The GLOBAL loss from the shard's embeddings (collectives
  # allowed); aux as in loss_fn without 'batch_stats'. loss_fn(...) must equal
  # loss_from_embeddings(embed_for_loss(...)).
  embed_for_loss: Callable[..., Any] | None = None
  loss_from_embeddings: Callable[..., Any] | None = None
  # Image-text methods (CLIP, SigLIP): embeddings in the joint space, read by zero-shot
  # classification and image-text retrieval. joint_image(state, images) -> (b, d) and
  # joint_text(state, tokens) -> (b, d), eval mode, no collectives; None for image-only methods.
  joint_image: Callable[..., jax.Array] | None = None
  joint_text: Callable[..., jax.Array] | None = None


def encoder_subtree(method: Method, tree: dict) -> Any:
  """The encoder's share of a params or batch_stats dict (the method's encoder_path)."""
  for key in method.encoder_path:
    tree = tree[key]
  return tree


def build_encoder(config, *, axis_name: str | None = AXIS) -> nn.Module:
  m = config.model
  dtype = jnp.bfloat16 if m.get("dtype", "float32") == "bfloat16" else jnp.float32
  if vit.is_vit(m.name):  # 'vit_s16', ...: no BatchNorm, so no axis name
    return vit.get_encoder(
      m.name, pool=m.get("pool", "cls"), posemb=m.get("posemb", "learn"), dtype=dtype
    )
  return resnet.get_encoder(
    m.name,
    width=m.get("width", 1.0),
    stem=m.get("stem", "cifar"),
    norm=m.get("norm", "batch"),
    bn_axis_name=axis_name,
    dtype=dtype,
  )


def build_mlp(
  hidden_dims,
  out_dim,
  *,
  last_bn=True,
  use_bn=True,
  last_bn_scale=False,
  axis_name: str | None = AXIS,
) -> nn.Module:
  return heads.MLP(
    hidden_dims=tuple(hidden_dims),
    out_dim=out_dim,
    use_bn=use_bn,
    last_bn=last_bn,
    last_bn_scale=last_bn_scale,
    bn_axis_name=axis_name,
  )


def build_net(
  config, num_classes: int, *, predictor: bool = False, axis_name: str | None = AXIS
) -> nn.Module:
  """Encoder -> projector (config.head) [-> predictor (config.predictor)] + online probe."""
  h = config.head
  projector = build_mlp(
    h.hidden_dims,
    h.out_dim,
    last_bn=h.get("last_bn", True),
    use_bn=h.get("use_bn", True),
    last_bn_scale=h.get("last_bn_scale", False),
    axis_name=axis_name,
  )
  pred = None
  if predictor:
    p = config.predictor
    pred = build_mlp(
      p.hidden_dims,
      p.out_dim,
      last_bn=p.get("last_bn", False),
      use_bn=p.get("use_bn", True),
      last_bn_scale=p.get("last_bn_scale", False),
      axis_name=axis_name,
    )
  return networks.ContrastiveNet(
    encoder=build_encoder(config, axis_name=axis_name),
    projector=projector,
    predictor=pred,
    num_classes=num_classes,
  )


def check_predictor_dims(config) -> None:
  """Methods that compare a predictor's output with a projection need equal widths."""
  if int(config.predictor.out_dim) != int(config.head.out_dim):
    raise ValueError(
      f"config.predictor.out_dim={config.predictor.out_dim} must equal "
      f"config.head.out_dim={config.head.out_dim}: the predictor's output is compared "
      f"with the (target) projection."
    )


def init_net(net: nn.Module, rng: jax.Array, images: jax.Array) -> dict:
  variables = net.init({"params": rng}, images, train=False)
  return {"params": variables["params"], "batch_stats": variables.get("batch_stats", {})}


def apply_train(net: nn.Module, params, batch_stats, images) -> tuple[dict, Any]:
  """Forward in training mode; returns (outputs, new batch_stats)."""
  if batch_stats:
    out, updates = net.apply(
      {"params": params, "batch_stats": batch_stats}, images, train=True, mutable=["batch_stats"]
    )
    return out, updates["batch_stats"]
  return net.apply({"params": params}, images, train=True), batch_stats


def apply_eval(net: nn.Module, params, batch_stats, images) -> dict:
  variables = {"params": params}
  if batch_stats:
    variables["batch_stats"] = batch_stats
  return net.apply(variables, images, train=False)


def probe_loss(logits: jax.Array, labels: jax.Array, axis_name: str | None = AXIS):
  """Global mean cross-entropy and accuracy of the online linear probe."""
  ce = optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), labels)
  correct = (jnp.argmax(logits, -1) == labels).astype(jnp.float32)
  n = jnp.asarray(labels.shape[0], jnp.float32)
  s_ce, s_acc = ce.sum(), correct.sum()
  if axis_name is not None:
    s_ce, s_acc, n = jax.lax.psum((s_ce, s_acc, n), axis_name)
  return s_ce / n, s_acc / n


def global_mean(x: jax.Array, axis_name: str | None = AXIS) -> jax.Array:
  """Mean of a per-device scalar over the mesh (equal shard sizes)."""
  return jax.lax.pmean(x, axis_name) if axis_name is not None else x


def collapse_std(z: jax.Array, axis_name: str | None = AXIS) -> jax.Array:
  """Per-dimension std of L2-normalised embeddings over the global batch (SimSiam's monitor)."""
  zn = z.astype(jnp.float32)
  zn = zn / (jnp.linalg.norm(zn, axis=-1, keepdims=True) + 1e-12)
  if axis_name is not None:
    zn = jax.lax.all_gather(zn, axis_name, tiled=True)
  return (
    jax.lax.pmean(losses.embedding_std(zn), axis_name) if axis_name else losses.embedding_std(zn)
  )


def per_view_bn(config, default: bool) -> bool:
  """config.method_args.per_view_bn, else the method's official default (see apply_views)."""
  value = config.method_args.get("per_view_bn", None)
  if value is None:
    return default
  if not isinstance(value, bool):
    raise ValueError(
      f"config.method_args.per_view_bn={value!r} must be True (each view through the network "
      f"separately, BN statistics per view) or False (both views in one forward)."
    )
  return value


def apply_views(net: nn.Module, params, batch_stats, views, *, per_view: bool) -> tuple[dict, Any]:
  """Train-mode forward of several views; outputs have the views' rows concatenated in order.

  per_view=False: one forward of the concatenated views, one set of BatchNorm statistics over all
  of them (SimCLR, tf2/model.py concatenates the views along the batch; SupContrast does too).
  per_view=True: each view is its own forward, so BN normalises each view with its own statistics
  (synchronised over the mesh when the net's BN has an axis name), as BYOL (byol_experiment.py
  apply_once_fn per view), SimSiam (builder.py encoder(x1), encoder(x2)) and MoCo v3 (builder.py)
  do. The running averages are updated once per view, in view order, as PyTorch's and Haiku's
  sequential calls do.
  """
  if not per_view:
    return apply_train(net, params, batch_stats, jnp.concatenate(list(views), axis=0))
  outs = []
  for v in views:
    out, batch_stats = apply_train(net, params, batch_stats, v)
    outs.append(out)
  return jax.tree.map(lambda *xs: jnp.concatenate(xs, axis=0), *outs), batch_stats


def two_views(batch) -> tuple[jax.Array, int]:
  """Concatenates the two views so both go through one forward pass (one set of BN statistics)."""
  return jnp.concatenate([batch["view1"], batch["view2"]], axis=0), batch["view1"].shape[0]


def ema(target, online, momentum):
  return jax.tree.map(lambda t, o: momentum * t + (1.0 - momentum) * o, target, online)


def l2_normalize(x: jax.Array, eps: float = 1e-12) -> jax.Array:
  x = x.astype(jnp.float32)
  return x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), eps)


def cosine_momentum(base_momentum: float, step, total_steps: int | None, final: float = 1.0):
  """EMA momentum annealed from base to `final` on a half cosine over the run (BYOL eq. in Sec. 3.2).

  m(k) = final - (final - base) * (cos(pi k / K) + 1) / 2; constant `base_momentum` when the run
  length is unknown (total_steps None or <= 0) or when final == base.
  """
  if not total_steps or total_steps <= 0 or final == base_momentum:
    return jnp.asarray(base_momentum, jnp.float32)
  frac = jnp.clip(jnp.asarray(step, jnp.float32) / float(total_steps), 0.0, 1.0)
  return final - (final - base_momentum) * (jnp.cos(jnp.pi * frac) + 1.0) / 2.0


def resolve_total_steps(config, total_steps: int | None) -> int | None:
  """The run length for schedules inside a method: the trainer's value, else config.total_steps > 0."""
  if total_steps:
    return int(total_steps)
  t = config.get("total_steps", -1)
  return int(t) if t and t > 0 else None


def subtree(tree: dict, keys) -> dict:
  """The entries of a params/batch_stats dict under `keys` that exist (a target net's share)."""
  return {k: tree[k] for k in keys if k in tree}


# ----------------------------------------------------------------------------- momentum targets
# MoCo v2/v3 and BYOL keep a target network (encoder + projector) whose parameters are an EMA of the
# online ones and whose BatchNorm statistics come from its own train-mode forward; both live in
# extras['target'] = {'params', 'batch_stats'}.

TARGET_KEYS = ("encoder", "projector")


def build_target_net(config, *, axis_name: str | None = AXIS) -> nn.Module:
  """The target/key network: encoder + projector, no predictor, no probe (params = TARGET_KEYS)."""
  return build_net(config, 0, predictor=False, axis_name=axis_name)


def init_target(variables: dict) -> dict:
  """The target starts as a copy of the online encoder and projector (and their BN statistics)."""
  return {
    "params": subtree(variables["params"], TARGET_KEYS),
    "batch_stats": subtree(variables["batch_stats"], TARGET_KEYS),
  }


def apply_target(target_net: nn.Module, target: dict, images: jax.Array) -> tuple[dict, Any]:
  """Train-mode (synchronised BN) target forward; outputs carry no gradient."""
  out, stats = apply_train(target_net, target["params"], target["batch_stats"], images)
  return jax.lax.stop_gradient(out), stats


def apply_target_views(target_net: nn.Module, target: dict, views, *, per_view: bool):
  """apply_views for the target network; outputs carry no gradient."""
  out, stats = apply_views(
    target_net, target["params"], target["batch_stats"], views, per_view=per_view
  )
  return jax.lax.stop_gradient(out), stats


def update_target(target: dict, online_params, new_batch_stats, momentum) -> dict:
  return {
    "params": ema(target["params"], subtree(online_params, TARGET_KEYS), momentum),
    "batch_stats": new_batch_stats,
  }
