"""SigLIP (Zhai et al. 2023, "Sigmoid Loss for Language Image Pre-Training"): CLIP's two towers with
the pairwise sigmoid loss instead of the softmax.

Every (image, text) pair of the global batch is a binary problem, positive on the diagonal:
loss = -1/N sum_ij log sigmoid(z_ij (t x_i . y_j + b)), with a learnable t = exp(t') initialised to
t' = log(method_args.init_logit_scale = 10) and a learnable bias b initialised to
method_args.init_logit_bias = -10 (the paper's Sec. 3.2: the bias keeps the initial loss from being
dominated by the N^2 - N negatives). No clamp on t, as in big_vision.

method_args.sigmoid_loss picks the implementation:
  'ring'  (default) losses_ring.sigmoid_loss_ring: each device passes its text embeddings to the
          next (lax.ppermute), so no device holds the other tower's full batch (big_vision's
          chunked loss); method_args.loss_chunk_size texts are scored at a time within a device.
  'dense' losses.sigmoid_loss: one all-gather of the texts and the (n x N) logits at once.
Both give the same loss and gradients (tests/test_losses_ring.py). Everything else, including the
exact gradient-cache step, is CLIP's (methods/clip.py `build`).
"""

import math

from contrastive_jax import losses, losses_ring
from contrastive_jax.methods import base, clip

SIGMOID_LOSSES = ("ring", "dense")


def create(config, num_classes: int) -> base.Method:
  del num_classes
  args = config.method_args
  init_scale = float(args.init_logit_scale)
  if not init_scale > 0:
    raise ValueError(f"config.method_args.init_logit_scale={init_scale} must be > 0 (SigLIP: 10).")
  kind = args.sigmoid_loss
  if kind not in SIGMOID_LOSSES:
    raise ValueError(f"config.method_args.sigmoid_loss={kind!r}: expected one of {SIGMOID_LOSSES}.")
  chunk = args.get("loss_chunk_size", None)

  def loss(image_emb, text_emb, scale, bias):
    if kind == "dense":
      return losses.sigmoid_loss(image_emb, text_emb, scale, bias, axis_name=base.AXIS)
    return losses_ring.sigmoid_loss_ring(
      image_emb, text_emb, scale, bias, axis_name=base.AXIS, chunk_size=chunk
    )

  return clip.build(
    config,
    name="siglip",
    loss=loss,
    scale_init=math.log(init_scale),
    bias_init=float(args.init_logit_bias),
  )
