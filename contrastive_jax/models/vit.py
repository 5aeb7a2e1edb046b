"""Vision Transformers (Dosovitskiy et al. 2021) by name, as image encoders for any method.

Names are `vit_<size><patch>`: vit_ti16, vit_s16, vit_b32, ... (any patch size that divides the
image works, e.g. vit_mini4 on 32x32 CIFAR images). Sizes (width, depth, heads, MLP width):

  micro (32, 1, 2, 64)       test-only
  mini  (128, 4, 4, 512)     CPU-sized
  ti    (192, 12, 3, 768)    ViT-Ti (DeiT)
  s     (384, 12, 6, 1536)   ViT-S
  b     (768, 12, 12, 3072)  ViT-B
  l     (1024, 24, 16, 4096) ViT-L

Pre-LayerNorm blocks (models/transformer.py); pooling 'cls' (class token after the final LN, as in
ViT and CLIP) or 'mean' (mean of the patch tokens after the final LN, big_vision's 'gap');
positional embeddings 'learn' (CLIP, big_vision default) or 'sincos2d' (fixed, MoCo v3).
`__call__(images, train) -> (b, width)` float32, like the ResNets, so `config.model.name =
'vit_s16'` works for every method (methods/base.build_encoder dispatches here).
"""

import re
from typing import Any

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from contrastive_jax.models import transformer

SIZES = {
  "micro": (32, 1, 2, 64),
  "mini": (128, 4, 4, 512),
  "ti": (192, 12, 3, 768),
  "s": (384, 12, 6, 1536),
  "b": (768, 12, 12, 3072),
  "l": (1024, 24, 16, 4096),
}
POOLS = ("cls", "mean")
POSEMBS = ("learn", "sincos2d")
_NAME = re.compile(r"vit_(" + "|".join(SIZES) + r")(\d+)$")


def is_vit(name: str) -> bool:
  return isinstance(name, str) and name.startswith("vit_")


def available_encoders() -> list[str]:
  return [f"vit_{s}{p}" for s in ("ti", "s", "b", "l") for p in (16, 32)] + [
    "vit_mini4",
    "vit_micro4",
  ]


def sincos_2d(h: int, w: int, width: int, temperature: float = 10_000.0) -> np.ndarray:
  """Fixed 2-D sine-cosine position embeddings (1, h*w, width) (MoCo v3, big_vision)."""
  if width % 4:
    raise ValueError(f"sincos2d position embeddings need a width divisible by 4, got {width}.")
  y, x = np.mgrid[:h, :w]
  omega = 1.0 / temperature ** (np.arange(width // 4) / (width // 4 - 1 or 1))
  y = y.reshape(-1)[:, None] * omega[None, :]
  x = x.reshape(-1)[:, None] * omega[None, :]
  pe = np.concatenate([np.sin(x), np.cos(x), np.sin(y), np.cos(y)], axis=1)
  return pe[None].astype(np.float32)


class ViT(nn.Module):
  patch_size: int
  width: int
  depth: int
  num_heads: int
  mlp_dim: int
  pool: str = "cls"
  posemb: str = "learn"
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False):
    del train  # no dropout or batch statistics: train and eval forwards are the same
    p = self.patch_size
    if x.shape[1] % p or x.shape[2] % p:
      raise ValueError(
        f"Image size {x.shape[1]}x{x.shape[2]} is not a multiple of the ViT patch size {p} "
        f"(config.model.name); use an image size divisible by {p} or another patch size."
      )
    x = nn.Conv(
      self.width, (p, p), strides=(p, p), padding="VALID", dtype=self.dtype, name="patch_embed"
    )(x.astype(self.dtype))
    b, h, w, c = x.shape
    x = x.reshape(b, h * w, c)
    if self.posemb == "learn":
      pos = self.param(
        "pos_embedding", nn.initializers.normal(stddev=c**-0.5), (1, h * w, c), jnp.float32
      )
    else:
      pos = jnp.asarray(sincos_2d(h, w, c))
    x = x + pos.astype(self.dtype)
    if self.pool == "cls":
      cls = self.param("cls", nn.initializers.zeros, (1, 1, c), jnp.float32)
      # zeros_like(x[:, :1]) + cls, not broadcast_to: the token rows then carry x's (batch)
      # sharding, so plain jit over a mesh with explicit axes can concatenate them.
      x = jnp.concatenate([jnp.zeros_like(x[:, :1]) + cls.astype(self.dtype), x], axis=1)
    x = transformer.Encoder(
      self.depth, self.num_heads, self.mlp_dim, dtype=self.dtype, name="transformer"
    )(x)
    out = x[:, 0] if self.pool == "cls" else jnp.mean(x, axis=1)
    return out.astype(jnp.float32)


def get_encoder(
  name: str, *, pool: str = "cls", posemb: str = "learn", dtype: Any = jnp.float32
) -> ViT:
  """A ViT by name (config.model.name), e.g. 'vit_b32'; see the module docstring.

  Args:
    name: 'vit_<size><patch>' with size in SIZES.
    pool: 'cls' or 'mean' (config.model.pool).
    posemb: 'learn' or 'sincos2d' (config.model.posemb).
    dtype: computation dtype (jnp.bfloat16 on accelerators); parameters stay float32.

  Raises:
    ValueError: an unknown name, pool or position embedding.
  """
  match = _NAME.match(name)
  if not match or int(match.group(2)) < 1:
    raise ValueError(
      f"Unknown ViT {name!r} (config.model.name): use vit_<size><patch> with size in "
      f"{sorted(SIZES)}, e.g. {', '.join(available_encoders()[:4])}."
    )
  if pool not in POOLS:
    raise ValueError(f"config.model.pool={pool!r}: expected one of {POOLS}.")
  if posemb not in POSEMBS:
    raise ValueError(f"config.model.posemb={posemb!r}: expected one of {POSEMBS}.")
  width, depth, heads, mlp = SIZES[match.group(1)]
  return ViT(int(match.group(2)), width, depth, heads, mlp, pool=pool, posemb=posemb, dtype=dtype)
