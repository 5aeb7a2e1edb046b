"""MLP heads: projectors (SimCLR v1/v2, MoCo v2) and predictors (BYOL, SimSiam)."""

from typing import Any
from collections.abc import Sequence

import flax.linen as nn
import jax.numpy as jnp


class MLP(nn.Module):
  """Dense -> BN -> ReLU per hidden layer, then Dense(out_dim) (-> BN without scale/bias if `last_bn`).

  The final BN without learned affine parameters follows SimCLR v2's projector (and SimSiam's). With
  `use_bn=False` the head has no batch statistics at all (hidden Dense layers then carry a bias) and
  `last_bn` is ignored, so per-example outputs do not depend on the rest of the batch.
  `hidden_dims=()` gives a linear head.

  Attributes:
    hidden_dims: widths of the hidden layers.
    out_dim: output width.
    use_bn: BatchNorm after each hidden Dense.
    last_bn: BatchNorm (no scale, no bias) after the output Dense; only with use_bn.
    bn_axis_name: mesh axis for synchronised BatchNorm in training.
    bn_momentum: BatchNorm running-average decay.
    dtype: computation dtype; the output is float32.
  """

  hidden_dims: Sequence[int]
  out_dim: int
  use_bn: bool = True
  last_bn: bool = True
  bn_axis_name: str | None = None
  bn_momentum: float = 0.9
  dtype: Any = jnp.float32

  def _bn(self, train: bool, name: str, affine: bool = True):
    return nn.BatchNorm(
      use_running_average=not train,
      momentum=self.bn_momentum,
      epsilon=1e-5,
      axis_name=self.bn_axis_name if train else None,
      use_scale=affine,
      use_bias=affine,
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
      x = self._bn(train, "out_bn", affine=False)(x)
    return x.astype(jnp.float32)
