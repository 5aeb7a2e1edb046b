"""CLIP (Radford et al. 2021): an image tower and a text tower trained so that true (image, caption)
pairs score highest, with the symmetric InfoNCE over the global batch (losses.clip_loss).

Batches: {'image': (b, S, S, 3) float32, 'tokens': (b, L) int32} (data/image_text.py). The image tower
is any encoder by config.model.name (ViT or ResNet); the text tower is config.text_model; both project
linearly (no bias) to method_args.embed_dim.

Temperature: a learnable logit scale, log-parameterised (logit_scale = log(1 / tau)), initialised to
log(method_args.init_logit_scale) = log(1 / 0.07) and clamped to [0, log(method_args.max_logit_scale
= 100)] after every update (CLIP Sec. 2.5; open_clip clamps the same range), through post_update.

Config (method_args): embed_dim, init_logit_scale, max_logit_scale, loss_tile_size (None = dense; an
int = the tiled softmax of losses_tiled, never forming the N x N logits).

The loss is split into `embed_for_loss` and `loss_from_embeddings`, so the gradient-cache step
(config.grad_cache_chunk > 0) handles batches far beyond memory. It is exact here (no BatchNorm in
the ViT or the text tower): the logit scale travels with the embeddings as a per-row copy made
device-varying, so its gradient is each device's own share, summed once by the step like every
other parameter (tests/test_clip.py).

`build` is the image-text method skeleton that SigLIP (methods/siglip.py) reuses with its loss.
"""

import math

import jax.numpy as jnp

from contrastive_jax import losses
from contrastive_jax.data import tokenizer
from contrastive_jax.methods import base
from contrastive_jax.models import text as text_lib
from contrastive_jax.models import two_tower

BATCH_KEYS = ("image", "tokens")


def build_net(config, *, scale_init: float, bias_init: float | None, axis_name=base.AXIS):
  """The two-tower net of config: image tower (config.model), text tower (config.text_model)."""
  m = config.model
  dtype = jnp.bfloat16 if m.get("dtype", "float32") == "bfloat16" else jnp.float32
  tok = tokenizer.get_tokenizer(config.text.tokenizer)
  text = text_lib.from_config(
    config.text_model,
    vocab_size=tok.vocab_size,
    context_length=int(config.text.context_length),
    dtype=dtype,
  )
  embed_dim = int(config.method_args.embed_dim)
  if embed_dim <= 0:
    raise ValueError(f"config.method_args.embed_dim={embed_dim} must be a positive width.")
  return two_tower.TwoTower(
    encoder=base.build_encoder(config, axis_name=axis_name),
    text=text,
    embed_dim=embed_dim,
    scale_init=scale_init,
    bias_init=bias_init,
  )


def _positive(config, field: str) -> float:
  value = float(config.method_args[field])
  if not value > 0:
    raise ValueError(f"config.method_args.{field}={value} must be > 0.")
  return value


def build(config, *, name: str, loss, scale_init: float, bias_init, post_update=None):
  """An image-text Method around `loss(image_emb, text_emb, scale, bias) -> global loss`.

  Args:
    config: the run's config.
    name: the method's name.
    loss: called inside shard_map on this device's rows; returns the global loss.
    scale_init: initial logit_scale (a log). bias_init: initial logit_bias, or None for none.
    post_update: optional `(params) -> params` after every optimiser update.

  Returns:
    base.Method with batch_keys ('image', 'tokens') and the zero-shot evaluator.
  """
  if not config.text.get("source"):
    raise ValueError(
      f"config.method={name!r} trains on (image, caption) batches but config.text.source is "
      f"empty; set it to 'templates' (a labelled dataset captioned by prompt templates), 'tfds', "
      f"'folder' or 'synthetic' (see data/image_text.py)."
    )
  net = build_net(config, scale_init=scale_init, bias_init=bias_init)
  eval_net = build_net(config, scale_init=scale_init, bias_init=bias_init, axis_name=None)
  context_length = int(config.text.context_length)
  TT = two_tower.TwoTower

  def init(rng, images):
    tokens = jnp.zeros((images.shape[0], context_length), jnp.int32)
    v = eval_net.init({"params": rng}, images, tokens, train=False)
    return {"params": v["params"], "batch_stats": v.get("batch_stats", {}), "extras": {}}

  def embed_for_loss(params, state, batch, rng):
    """Both towers on these rows; `scale`/`bias` are per-row copies of the logit scale/bias."""
    del rng
    variables = {"params": params}
    if state.batch_stats:  # a ResNet image tower with BatchNorm
      variables["batch_stats"] = state.batch_stats
      out, upd = net.apply(
        variables, batch["image"], batch["tokens"], train=True, mutable=["batch_stats"]
      )
      new_stats = upd["batch_stats"]
    else:
      out, new_stats = net.apply(variables, batch["image"], batch["tokens"], train=True), {}
    # + a zero that varies per device: the copies' gradients stay each device's own share.
    vary = jnp.zeros_like(out["image_emb"][:, 0])
    emb = {
      "image": out["image_emb"],
      "text": out["text_emb"],
      "scale": out["logit_scale"] + vary,
      "bias": out["logit_bias"] + vary,
    }
    return emb, new_stats

  def loss_from_embeddings(emb, batch, state, rng, step):
    del batch, rng, step
    value = loss(emb["image"], emb["text"], emb["scale"][0], emb["bias"][0])
    # exp(logit_scale): the inverse temperature (CLIP's "logit scale", clamped at 100).
    metrics = {"loss": value, "logit_scale": jnp.exp(state.params["logit_scale"])}
    if bias_init is not None:
      metrics["logit_bias"] = state.params["logit_bias"]
    return value, {"metrics": metrics, "extras_update": None}

  def loss_fn(params, state, batch, rng, step):
    emb, new_stats = embed_for_loss(params, state, batch, rng)
    value, aux = loss_from_embeddings(emb, batch, state, rng, step)
    return value, {**aux, "batch_stats": new_stats}

  def _variables(state):
    v = {"params": state.params}
    if state.batch_stats:
      v["batch_stats"] = state.batch_stats
    return v

  def embed(state, images):
    return eval_net.apply(_variables(state), images, train=False, method=TT.encode_image)[0]

  def joint_image(state, images):
    return eval_net.apply(_variables(state), images, train=False, method=TT.encode_image)[1]

  def joint_text(state, tokens):
    return eval_net.apply(_variables(state), tokens, train=False, method=TT.encode_text)

  def post(extras, params, update, step):
    del update, step
    return base.Updated(post_update(params) if post_update else params, extras)

  return base.Method(
    name=name,
    init=init,
    loss_fn=loss_fn,
    embed=embed,
    post_update=post,
    projector_path=("image_proj",),
    batch_keys=BATCH_KEYS,
    evaluators=("zero_shot",),
    embed_for_loss=embed_for_loss,
    loss_from_embeddings=loss_from_embeddings,
    joint_image=joint_image,
    joint_text=joint_text,
  )


def create(config, num_classes: int) -> base.Method:
  del num_classes  # no online probe: zero-shot classification is CLIP's monitor
  args = config.method_args
  init_scale = _positive(config, "init_logit_scale")
  max_scale = _positive(config, "max_logit_scale")
  if init_scale > max_scale:
    raise ValueError(
      f"config.method_args.init_logit_scale={init_scale} exceeds max_logit_scale={max_scale}."
    )
  tile = args.get("loss_tile_size", None)
  log_max = math.log(max_scale)

  def loss(image_emb, text_emb, scale, bias):
    del bias
    return losses.clip_loss(image_emb, text_emb, scale, axis_name=base.AXIS, tile_size=tile)

  def clamp(params):
    return {**params, "logit_scale": jnp.clip(params["logit_scale"], 0.0, log_max)}

  return build(
    config,
    name="clip",
    loss=loss,
    scale_init=math.log(init_scale),
    bias_init=None,
    post_update=clamp,
  )
