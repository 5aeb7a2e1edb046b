"""Pre-LayerNorm Transformer encoder blocks shared by the ViT (vit.py) and the text tower (text.py).

Block: x + MHSA(LN(x)), then x + MLP(LN(x)) (the GELU MLP of ViT and CLIP). Computation runs in
`dtype` (bfloat16 on accelerators) with float32 parameters (`param_dtype`); LayerNorm statistics
and the attention softmax are float32 whatever the compute dtype. No dropout and no batch statistics: a row's output never depends on the other
rows of the batch, which makes the gradient-cache step exact.
"""

import functools
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

# ViT (Dosovitskiy et al. 2021) and CLIP initialise dense kernels with Xavier-uniform / small
# normals; xavier_uniform with zero biases is big_vision's choice for ViT.
dense_init = nn.initializers.xavier_uniform()
# The softmax over keys in float32 even when the rest runs in bfloat16.
_attention = functools.partial(nn.dot_product_attention, force_fp32_for_softmax=True)


class MlpBlock(nn.Module):
  mlp_dim: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    width = x.shape[-1]
    x = nn.Dense(self.mlp_dim, dtype=self.dtype, kernel_init=dense_init, name="fc1")(x)
    x = nn.gelu(x, approximate=False)
    return nn.Dense(width, dtype=self.dtype, kernel_init=dense_init, name="fc2")(x)


class EncoderBlock(nn.Module):
  """One pre-LN block; `mask` (b, 1, q, k) bool, True where attention is allowed (None: all)."""

  num_heads: int
  mlp_dim: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, mask=None):
    y = nn.LayerNorm(epsilon=1e-6, dtype=self.dtype, name="ln1")(x)
    y = nn.MultiHeadDotProductAttention(
      num_heads=self.num_heads,
      dtype=self.dtype,
      kernel_init=dense_init,
      deterministic=True,
      attention_fn=_attention,
      name="attn",
    )(y, y, mask=mask)
    x = x + y
    y = nn.LayerNorm(epsilon=1e-6, dtype=self.dtype, name="ln2")(x)
    return x + MlpBlock(self.mlp_dim, dtype=self.dtype, name="mlp")(y)


class Encoder(nn.Module):
  """`depth` pre-LN blocks followed by a final LayerNorm."""

  depth: int
  num_heads: int
  mlp_dim: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, mask=None):
    if x.shape[-1] % self.num_heads:
      raise ValueError(
        f"Transformer width {x.shape[-1]} is not divisible by num_heads={self.num_heads}; pick "
        f"a width that is a multiple of the number of heads."
      )
    for i in range(self.depth):
      x = EncoderBlock(self.num_heads, self.mlp_dim, dtype=self.dtype, name=f"block{i}")(x, mask)
    return nn.LayerNorm(epsilon=1e-6, dtype=self.dtype, name="ln_final")(x)
