"""MLP heads: projectors (SimCLR v1/v2, MoCo v2) and predictors (BYOL, SimSiam)."""

from typing import Any
from collections.abc import Sequence

import flax.linen as nn
import jax.numpy as jnp


class MLP(nn.Module):
  """Dense -> BN -> ReLU per hidden layer, then Dense(out_dim) (-> BN if `last_bn`).

  The final BN has no offset; without `last_bn_scale` it has no scale either (SimSiam's
  `BatchNorm1d(dim, affine=False)`, MoCo v3's output BN). SimCLR v2's projector keeps a learnable
  scale there: google-research/simclr tf2/model.py ProjectionHead builds its last layer as
  `LinearLayer(use_bias=False, use_bn=True)`, i.e. `BatchNormRelu(relu=False, center=False)` with the
  default `scale=True`. With
  `use_bn=False` the head has no batch statistics at all (hidden Dense layers then carry a bias) and
  `last_bn` is ignored, so per-example outputs do not depend on the rest of the batch.
  `hidden_dims=()` gives a linear head.

  Attributes:
    hidden_dims: widths of the hidden layers.
    out_dim: output width.
    use_bn: BatchNorm after each hidden Dense.
    last_bn: BatchNorm (no offset) after the output Dense; only with use_bn.
    last_bn_scale: that BatchNorm learns a scale (SimCLR v2); False: no affine parameters.
    bn_axis_name: mesh axis for synchronised BatchNorm in training.
    bn_momentum: BatchNorm running-average decay.
    dtype: computation dtype; the output is float32.
  """

  hidden_dims: Sequence[int]
  out_dim: int
  use_bn: bool = True
  last_bn: bool = True
  last_bn_scale: bool = False
  bn_axis_name: str | None = None
  bn_momentum: float = 0.9
  dtype: Any = jnp.float32

  def _bn(self, train: bool, name: str, scale: bool = True, offset: bool = True):
    return nn.BatchNorm(
      use_running_average=not train,
      momentum=self.bn_momentum,
      epsilon=1e-5,
      axis_name=self.bn_axis_name if train else None,
      use_scale=scale,
      use_bias=offset,
      dtype=self.dtype,
      name=name,
    )

  @nn.compact
  def __call__(self, x, train: bool):
    x = jnp.asarray(x, self.dtype)
    for i, dim in enumerate(self.hidden_dims):
      # A bias right before BN is redundant (BN's offset replaces it).
      x = nn.Dense(dim, use_bias=not self.use_bn, dtype=self.dtype, name=f"dense{i}")(x)
      if self.use_bn:
        x = self._bn(train, f"bn{i}")(x)
      x = nn.relu(x)
    final_bn = self.use_bn and self.last_bn
    x = nn.Dense(self.out_dim, use_bias=not final_bn, dtype=self.dtype, name="out")(x)
    if final_bn:
      x = self._bn(train, "out_bn", scale=self.last_bn_scale, offset=False)(x)
    return x.astype(jnp.float32)
