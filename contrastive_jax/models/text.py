"""CLIP's text tower (Radford et al. 2021, Sec. 2.4): a causal pre-LN Transformer pooled at the
end-of-text token.

tokens (b, L) int32 -> token embedding + learned position embedding -> `depth` blocks with a causal
mask -> final LayerNorm -> the features at the end-of-text position (the largest id in each row:
CLIP's tokenizer gives <end_of_text> the last id, and padding is 0) -> (b, width) float32. The
causal mask means the pooled feature sees the whole caption and nothing after it, so padding never
changes a row's output. bfloat16 compute with float32 parameters as in the other encoders.
"""

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from contrastive_jax.models import transformer


class TextTransformer(nn.Module):
  vocab_size: int
  context_length: int
  width: int
  depth: int
  num_heads: int
  mlp_dim: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, tokens, train: bool = False):
    del train  # no dropout or batch statistics
    b, length = tokens.shape
    if length > self.context_length:
      raise ValueError(
        f"Token rows of length {length} exceed the text tower's context_length "
        f"{self.context_length} (config.text.context_length); tokenize with the same length."
      )
    # CLIP's initialisation: token embeddings N(0, 0.02), positions N(0, 0.01).
    embed = nn.Embed(
      self.vocab_size,
      self.width,
      embedding_init=nn.initializers.normal(stddev=0.02),
      dtype=self.dtype,
      name="token_embed",
    )
    pos = self.param(
      "pos_embedding", nn.initializers.normal(stddev=0.01), (self.context_length, self.width)
    )
    x = embed(tokens) + pos[:length].astype(self.dtype)
    mask = nn.make_causal_mask(tokens)  # (b, 1, L, L)
    x = transformer.Encoder(
      self.depth, self.num_heads, self.mlp_dim, dtype=self.dtype, name="transformer"
    )(x, mask)
    eot = jnp.argmax(tokens, axis=-1)
    return x[jnp.arange(b), eot].astype(jnp.float32)


def from_config(text_model, *, vocab_size: int, context_length: int, dtype: Any) -> TextTransformer:
  """The text tower of `config.text_model` (width, depth, heads, mlp_ratio)."""
  width, heads = int(text_model.width), int(text_model.heads)
  if width % heads:
    raise ValueError(
      f"config.text_model.width={width} is not divisible by config.text_model.heads={heads}."
    )
  return TextTransformer(
    vocab_size=vocab_size,
    context_length=context_length,
    width=width,
    depth=int(text_model.depth),
    num_heads=heads,
    mlp_dim=int(round(width * float(text_model.mlp_ratio))),
    dtype=dtype,
  )
