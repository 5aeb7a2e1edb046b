"""Classifier: encoder [-> the first layer of a projection head] -> a new linear head (fine-tuning).

Parameters live under 'encoder', 'projector' and 'head' (the default encoder_path and projector_path
of methods/base.Method), so a pre-trained encoder and the first projector layer (SimCLRv2
fine-tunes from there, Chen et al. 2020b Sec. 2) can be copied in by path.
"""

import flax.linen as nn
import jax.numpy as jnp


class FirstProjectionLayer(nn.Module):
  """Dense -> BN -> ReLU, named 'dense0' / 'bn0' as the first hidden layer of heads.MLP, so the
  pre-training projector's first layer loads into it by name."""

  dim: int
  use_bn: bool = True
  bn_axis_name: str | None = None

  @nn.compact
  def __call__(self, x, train: bool):
    # As in heads.MLP: no bias before BN; BN momentum 0.9, epsilon 1e-5.
    x = nn.Dense(self.dim, use_bias=not self.use_bn, name="dense0")(x)
    if self.use_bn:
      x = nn.BatchNorm(
        use_running_average=not train,
        momentum=0.9,
        epsilon=1e-5,
        axis_name=self.bn_axis_name if train else None,
        name="bn0",
      )(x)
    return nn.relu(x)


class Classifier(nn.Module):
  """encoder [-> FirstProjectionLayer(proj_dim) when proj_dim > 0] -> Dense(num_classes), zero init.

  `__call__(x, train)` returns the class logits (b, num_classes) in float32.
  """

  encoder: nn.Module
  num_classes: int
  proj_dim: int = 0
  proj_use_bn: bool = True
  bn_axis_name: str | None = None

  @nn.compact
  def __call__(self, x, train: bool):
    h = self.encoder(x, train=train)
    if self.proj_dim:
      h = FirstProjectionLayer(
        self.proj_dim, self.proj_use_bn, self.bn_axis_name, name="projector"
      )(h, train)
    # Zero init: the fine-tune starts from the pre-trained features with uniform class scores.
    return nn.Dense(self.num_classes, kernel_init=nn.initializers.zeros, name="head")(
      h.astype(jnp.float32)
    )
