"""The image-text network of CLIP and SigLIP: an image tower, a text tower, linear projections into
one joint space, and the learnable logit scale (and bias).

Parameters: `encoder` (the image tower: any encoder of models/, so kNN, linear probes and
fine-tuning read it like any method's encoder), `text` (the text tower), `image_proj` and
`text_proj` (bias-free linear maps to `embed_dim`, as CLIP's projections), `logit_scale` (scalar,
the log of the temperature's inverse) and, for SigLIP, `logit_bias` (scalar).
"""

import flax.linen as nn
import jax.numpy as jnp


class TwoTower(nn.Module):
  encoder: nn.Module  # the image tower; params['encoder'] like every method's encoder
  text: nn.Module  # the text tower; params['text']
  embed_dim: int
  scale_init: float
  bias_init: float | None = None  # None: no bias parameter (CLIP)

  def setup(self):
    # Kernels N(0, width^-0.5) as CLIP's projections; computed in float32 (small).
    init = nn.initializers.variance_scaling(1.0, "fan_in", "normal")
    self.image_proj = nn.Dense(self.embed_dim, use_bias=False, kernel_init=init)
    self.text_proj = nn.Dense(self.embed_dim, use_bias=False, kernel_init=init)
    self.logit_scale = self.param("logit_scale", nn.initializers.constant(self.scale_init), ())
    if self.bias_init is not None:
      self.logit_bias = self.param("logit_bias", nn.initializers.constant(self.bias_init), ())

  def encode_image(self, images, train: bool = False):
    """(features before the projection (b, w), joint-space embedding (b, embed_dim))."""
    features = self.encoder(images, train=train)
    return features, self.image_proj(features.astype(jnp.float32))

  def encode_text(self, tokens, train: bool = False):
    return self.text_proj(self.text(tokens, train=train).astype(jnp.float32))

  def scale_and_bias(self):
    bias = self.logit_bias if self.bias_init is not None else jnp.zeros((), jnp.float32)
    return self.logit_scale, bias

  def __call__(self, images, tokens, train: bool = False):
    features, image_emb = self.encode_image(images, train)
    scale, bias = self.scale_and_bias()
    return {
      "features": features,
      "image_emb": image_emb,
      "text_emb": self.encode_text(tokens, train),
      "logit_scale": scale,
      "logit_bias": bias,
    }
