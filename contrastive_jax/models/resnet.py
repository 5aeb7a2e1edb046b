"""ResNet encoders (He et al. 2016) for contrastive pre-training, found by name.

`get_encoder(name, ...)` returns a flax.linen Module whose `__call__(x, train)` maps images (b, H,
W, 3) to globally average-pooled features (b, feature_dim): the representation, before any
projection head.

Two stems: 'cifar' (3x3 conv, stride 1, no max-pool; SimCLR Appendix B.9) and 'imagenet' (7x7 stride
2 + 3x3 max-pool stride 2). Three norms: 'batch' (synchronised over `bn_axis_name` in training),
'group' and 'layer'; the last two have no batch statistics, so per-example gradients do not depend
on the rest of the batch (needed by the gradient-cache step, whose gradient must equal the
full-batch gradient).
"""

import functools
from typing import Any
from collections.abc import Callable, Sequence

import flax.linen as nn
import jax.numpy as jnp

from contrastive_jax.models import cpu_fusion, small_convs

# He init with fan_out, as torchvision and the Flax ImageNet example use for ResNets.
conv_init = nn.initializers.variance_scaling(2.0, "fan_out", "normal")

NORMS = ("batch", "group", "layer")


class Conv(nn.Conv):
  """nn.Conv whose input XLA:CPU reads as a buffer in training (cpu_fusion.py: its weight gradient's
  transpose then copies memory instead of recomputing the normalisation; 1.3-1.6x the CPU step).
  Off in evaluation, where no weight gradient is taken and the copy would be pure cost. On CPU a
  conv whose output is smaller than its kernel (the last stage at 16 px) runs as a matmul over
  patches (small_convs.py: XLA:CPU's swapped-operand form of it is ~10x slower)."""

  materialize_input: bool = False
  conv_general_dilated: Callable | None = small_convs.conv_general_dilated

  def __call__(self, inputs):
    if self.materialize_input:
      inputs = cpu_fusion.materialize(inputs)
    return super().__call__(inputs)


STEMS = ("cifar", "imagenet")


def _num_groups(channels: int, max_groups: int = 32) -> int:
  """Largest divisor of `channels` that is at most `max_groups` (32 as in Wu & He 2018)."""
  for g in range(min(max_groups, channels), 0, -1):
    if channels % g == 0:
      return g
  return 1


class Norm(nn.Module):
  """Normalisation layer chosen by name; `scale_init` lets residual blocks start as the identity."""

  kind: str = "batch"
  axis_name: str | None = None
  momentum: float = 0.9
  dtype: Any = jnp.float32
  scale_init: Callable = nn.initializers.ones

  @nn.compact
  def __call__(self, x, train: bool):
    if self.kind == "batch":
      # Statistics are only reduced across devices in training; eval uses the running averages.
      return nn.BatchNorm(
        use_running_average=not train,
        momentum=self.momentum,
        epsilon=1e-5,
        dtype=self.dtype,
        axis_name=self.axis_name if train else None,
        scale_init=self.scale_init,
        # Two passes (mean, then the mean squared deviation), not E[x^2] - E[x]^2: the one-pass
        # form cancels when a channel's mean dwarfs its spread, and its float32 rounding then
        # depends on how the batch is split (SupCon's 8-device step left a stem weight 2e-3
        # relative off the 1-device one, tests/test_methods.py). One more cross-device mean of a
        # (C,) vector per layer: 307.8 -> 275.4 images/s in one back-to-back pair on the 2-core CPU,
        # within that host's run-to-run spread (README "Train step").
        use_fast_variance=False,
        name="bn",
      )(x)
    if self.kind == "group":
      return nn.GroupNorm(
        num_groups=_num_groups(x.shape[-1]),
        epsilon=1e-5,
        dtype=self.dtype,
        scale_init=self.scale_init,
        name="gn",
      )(x)
    if self.kind == "layer":
      return nn.LayerNorm(epsilon=1e-5, dtype=self.dtype, scale_init=self.scale_init, name="ln")(x)
    raise ValueError(f"Unknown norm {self.kind!r} (config.model.norm); expected one of {NORMS}.")


class BasicBlock(nn.Module):
  """Two 3x3 convs (ResNet-18/34). Output channels = `filters`."""

  filters: int
  strides: int = 1
  norm: Callable = Norm
  conv: Callable = nn.Conv
  zero_init_residual: bool = True
  expansion = 1

  @nn.compact
  def __call__(self, x, train: bool):
    residual = x
    y = self.conv(self.filters, (3, 3), (self.strides, self.strides), name="conv1")(x)
    y = nn.relu(self.norm(name="norm1")(y, train))
    y = self.conv(self.filters, (3, 3), name="conv2")(y)
    last_scale = nn.initializers.zeros if self.zero_init_residual else nn.initializers.ones
    y = self.norm(scale_init=last_scale, name="norm2")(y, train)
    if residual.shape != y.shape:
      residual = self.conv(self.filters, (1, 1), (self.strides, self.strides), name="proj_conv")(
        residual
      )
      residual = self.norm(name="proj_norm")(residual, train)
    return nn.relu(residual + y)


class Bottleneck(nn.Module):
  """1x1 -> 3x3 (strided, as in ResNet v1.5) -> 1x1 (ResNet-50+). Output channels = 4 * `filters`."""

  filters: int
  strides: int = 1
  norm: Callable = Norm
  conv: Callable = nn.Conv
  zero_init_residual: bool = True
  expansion = 4

  @nn.compact
  def __call__(self, x, train: bool):
    residual = x
    y = self.conv(self.filters, (1, 1), name="conv1")(x)
    y = nn.relu(self.norm(name="norm1")(y, train))
    y = self.conv(self.filters, (3, 3), (self.strides, self.strides), name="conv2")(y)
    y = nn.relu(self.norm(name="norm2")(y, train))
    y = self.conv(self.filters * self.expansion, (1, 1), name="conv3")(y)
    last_scale = nn.initializers.zeros if self.zero_init_residual else nn.initializers.ones
    y = self.norm(scale_init=last_scale, name="norm3")(y, train)
    if residual.shape != y.shape:
      residual = self.conv(
        self.filters * self.expansion, (1, 1), (self.strides, self.strides), name="proj_conv"
      )(residual)
      residual = self.norm(name="proj_norm")(residual, train)
    return nn.relu(residual + y)


class ResNet(nn.Module):
  """ResNet trunk; returns globally average-pooled float32 features (b, feature_dim).

  Attributes:
    stage_sizes: number of blocks per stage.
    block_cls: BasicBlock or Bottleneck.
    base_widths: channels of each stage's blocks at width 1 (times the block expansion at the
      output).
    width: width multiplier (ResNet-50 1x/2x/4x of SimCLR).
    stem: 'cifar' or 'imagenet'.
    norm: 'batch', 'group' or 'layer'.
    bn_axis_name: mesh axis over which BatchNorm statistics are averaged in training (None: per
      device).
    bn_momentum: decay of the BatchNorm running averages.
    zero_init_residual: zero-init the last norm scale of each residual block (Goyal et al. 2017).
    dtype: computation dtype (parameters stay float32).
  """

  stage_sizes: Sequence[int]
  block_cls: Any
  base_widths: Sequence[int] = (64, 128, 256, 512)
  width: float = 1.0
  stem: str = "cifar"
  norm: str = "batch"
  bn_axis_name: str | None = None
  bn_momentum: float = 0.9
  zero_init_residual: bool = True
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool):
    if self.norm not in NORMS:
      raise ValueError(f"Unknown norm {self.norm!r} (config.model.norm); expected one of {NORMS}.")
    conv = functools.partial(
      Conv, use_bias=False, dtype=self.dtype, kernel_init=conv_init, materialize_input=train
    )
    norm = functools.partial(
      Norm, kind=self.norm, axis_name=self.bn_axis_name, momentum=self.bn_momentum, dtype=self.dtype
    )
    widths = [max(1, int(round(w * self.width))) for w in self.base_widths]
    x = jnp.asarray(x, self.dtype)
    if self.stem == "cifar":
      x = conv(widths[0], (3, 3), name="stem_conv")(x)
      x = nn.relu(norm(name="stem_norm")(x, train))
    elif self.stem == "imagenet":
      x = conv(widths[0], (7, 7), (2, 2), padding=[(3, 3), (3, 3)], name="stem_conv")(x)
      x = nn.relu(norm(name="stem_norm")(x, train))
      x = nn.max_pool(x, (3, 3), strides=(2, 2), padding="SAME")
    else:
      raise ValueError(f"Unknown stem {self.stem!r} (config.model.stem); expected one of {STEMS}.")
    for i, num_blocks in enumerate(self.stage_sizes):
      for j in range(num_blocks):
        strides = 2 if i > 0 and j == 0 else 1
        x = self.block_cls(
          widths[i],
          strides=strides,
          norm=norm,
          conv=conv,
          zero_init_residual=self.zero_init_residual,
          name=f"stage{i + 1}_block{j + 1}",
        )(x, train)
    # Pool and return in float32 so losses (log-sum-exp at low temperature) run at full precision.
    return jnp.mean(x, axis=(1, 2)).astype(jnp.float32)


# Builders: one function per name; get_encoder finds them with getattr (no hand-edited table).


def resnet18(**kwargs) -> ResNet:
  return ResNet(stage_sizes=(2, 2, 2, 2), block_cls=BasicBlock, **kwargs)


def resnet34(**kwargs) -> ResNet:
  return ResNet(stage_sizes=(3, 4, 6, 3), block_cls=BasicBlock, **kwargs)


def resnet50(**kwargs) -> ResNet:
  return ResNet(stage_sizes=(3, 4, 6, 3), block_cls=Bottleneck, **kwargs)


def resnet_tiny(**kwargs) -> ResNet:
  """~0.3M parameters: CPU-sized runs and smoke tests."""
  return ResNet(
    stage_sizes=(1, 1, 1, 1), block_cls=BasicBlock, base_widths=(16, 32, 64, 128), **kwargs
  )


def resnet_micro(**kwargs) -> ResNet:
  """Test-only: the smallest ResNet that still has every stage."""
  return ResNet(
    stage_sizes=(1, 1, 1, 1), block_cls=BasicBlock, base_widths=(8, 16, 32, 64), **kwargs
  )


def resnet_nano(**kwargs) -> ResNet:
  """Test-only: stem and one residual block of width 8 (convolutions, BatchNorm, a skip connection).

  For tests whose subject is not the encoder (methods, losses in the step, checkpoints, resume,
  multi-host): on a 2-core CPU its SimCLR train step compiles in ~4.6 s against ~7.1 s for
  resnet_micro, and compiling is most of such a test's time.
  """
  return ResNet(stage_sizes=(1,), block_cls=BasicBlock, base_widths=(8,), **kwargs)


def available_encoders() -> list:
  """Names accepted by `get_encoder`: every module-level builder named resnet*."""
  return sorted(
    n
    for n, f in globals().items()
    if n.startswith("resnet") and callable(f) and not isinstance(f, type)
  )


def get_encoder(
  name: str,
  *,
  width: float = 1.0,
  stem: str = "cifar",
  norm: str = "batch",
  bn_axis_name: str | None = None,
  dtype: Any = jnp.float32,
  bn_momentum: float = 0.9,
  zero_init_residual: bool = True,
) -> ResNet:
  """Builds an encoder by name.

  Args:
    name: one of `available_encoders()` (config.model.name).
    width: width multiplier (config.model.width).
    stem: 'cifar' or 'imagenet' (config.model.stem).
    norm: 'batch', 'group' or 'layer' (config.model.norm).
    bn_axis_name: mesh axis for synchronised BatchNorm in training, e.g. 'data'.
    dtype: computation dtype, e.g. jnp.bfloat16; parameters stay float32.
    bn_momentum: BatchNorm running-average decay.
    zero_init_residual: zero-init the last norm scale in each residual block.

  Returns:
    A flax.linen Module; `apply(variables, x, train=...)` gives (b, feature_dim) float32 features.

  Raises:
    ValueError: unknown name, stem or norm.
  """
  names = available_encoders()
  if name not in names:
    raise ValueError(
      f"Unknown encoder {name!r} (config.model.name); available: {', '.join(names)}."
    )
  if stem not in STEMS:
    raise ValueError(f"Unknown stem {stem!r} (config.model.stem); expected one of {STEMS}.")
  if norm not in NORMS:
    raise ValueError(f"Unknown norm {norm!r} (config.model.norm); expected one of {NORMS}.")
  return globals()[name](
    width=width,
    stem=stem,
    norm=norm,
    bn_axis_name=bn_axis_name,
    dtype=dtype,
    bn_momentum=bn_momentum,
    zero_init_residual=zero_init_residual,
  )
