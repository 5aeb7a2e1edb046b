"""Convolutions whose output is smaller than their kernel, as one matmul over patches (XLA:CPU).

Why. When a convolution's window is larger than the image it slides over (a 3x3 conv on the 2x2
maps of a ResNet's last stage at 16 px input, and the input-gradient of the strided conv that
makes them), XLA's algebraic simplifier swaps the convolution's operands, treating the image as
the kernel. XLA:CPU runs the swapped form (dim_labels 01fb_o01i->f01b: batch innermost) at a few
GFLOP/s: in the resnet_tiny SimCLR step at 16 px the last stage's three such convolutions took
195 of the step's 340 device-ms (2026-12-04 profile, `benchmarks/train_step.py --image_size=16`),
although they are about 1% of its FLOPs. Written as the patches of the padded input (one slice
per kernel tap, concatenated on the channels) times the kernel reshaped to (taps * C_in, C_out),
the forward pass and both gradients are plain matmuls, slices and pads, which XLA:CPU runs at
its GEMM rate. The patches are kh * kw times the input, which at these sizes is a few MB.

Where. `conv_general_dilated` has lax.conv_general_dilated's signature (flax's nn.Conv takes it
as its `conv_general_dilated` field) and takes the patches path only on the CPU backend, for an
NHWC x HWIO -> NHWC convolution without dilation or groups whose output is smaller than its
kernel in some spatial dimension; everything else goes to lax.conv_general_dilated unchanged, so
32-px and ImageNet-size programs, and every program on GPU and TPU, are the ones they were. The
sum runs in a different order than XLA's convolution, so results agree to float32 rounding, not
bit for bit (tests/test_small_convs.py checks values and gradients against float64 NumPy).

CONTRASTIVE_JAX_CPU_SMALL_CONV=0 turns it off (read at trace time; for before/after timings).
"""

import os

import jax
import jax.numpy as jnp
from jax import lax

ENV = "CONTRASTIVE_JAX_CPU_SMALL_CONV"
_NHWC = ("NHWC", "HWIO", "NHWC")


def enabled() -> bool:
  return os.environ.get(ENV, "1") != "0" and jax.default_backend() == "cpu"


def _ones(v) -> bool:
  return v is None or all(int(d) == 1 for d in v)


def _pads(lhs_shape, rhs_shape, strides, padding):
  if isinstance(padding, str):
    return lax.padtype_to_pads(lhs_shape[1:3], rhs_shape[:2], strides, padding)
  return [tuple(int(p) for p in pair) for pair in padding]


def _patch_pads(
  lhs_shape,
  rhs_shape,
  strides,
  padding,
  lhs_dilation=None,
  rhs_dilation=None,
  dimension_numbers=None,
  feature_group_count=1,
  batch_group_count=1,
):
  """The explicit paddings if the patches path takes this convolution, else None."""
  if not enabled() or len(lhs_shape) != 4 or len(rhs_shape) != 4:
    return None
  if dimension_numbers is None or lax.conv_dimension_numbers(
    lhs_shape, rhs_shape, dimension_numbers
  ) != lax.conv_dimension_numbers(lhs_shape, rhs_shape, _NHWC):
    return None
  if feature_group_count != 1 or batch_group_count != 1:
    return None
  if not (_ones(lhs_dilation) and _ones(rhs_dilation)):
    return None
  strides = tuple(strides) if strides is not None else (1, 1)
  pads = _pads(lhs_shape, rhs_shape, strides, padding)
  out = [
    (lhs_shape[1 + i] + pads[i][0] + pads[i][1] - rhs_shape[i]) // strides[i] + 1 for i in range(2)
  ]
  small = min(out) >= 1 and (out[0] < rhs_shape[0] or out[1] < rhs_shape[1])
  return pads if small else None


def takes_patches_path(*args, **kwargs) -> bool:
  """Whether `conv_general_dilated` computes this convolution as a matmul over patches (the
  arguments of `_patch_pads`: shapes, strides, padding, then lax's dilations, dimension numbers
  and group counts)."""
  return _patch_pads(*args, **kwargs) is not None


def patches_conv(lhs, rhs, strides, pads, precision=None, preferred_element_type=None):
  """NHWC x HWIO -> NHWC convolution (no dilation, no groups) as patches @ reshaped kernel."""
  kh, kw, cin, cout = rhs.shape
  sh, sw = strides
  xp = jnp.pad(lhs, ((0, 0), tuple(pads[0]), tuple(pads[1]), (0, 0)))
  ho = (xp.shape[1] - kh) // sh + 1
  wo = (xp.shape[2] - kw) // sw + 1
  taps = [
    lax.slice(
      xp,
      (0, i, j, 0),
      (xp.shape[0], i + sh * (ho - 1) + 1, j + sw * (wo - 1) + 1, cin),
      (1, sh, sw, 1),
    )
    for i in range(kh)
    for j in range(kw)
  ]
  # Channel order (i, j, c) is the row-major order of the kernel's first three axes.
  cols = jnp.concatenate(taps, axis=-1)
  return lax.dot_general(
    cols,
    rhs.reshape(kh * kw * cin, cout),
    (((3,), (0,)), ((), ())),
    precision=precision,
    preferred_element_type=preferred_element_type,
  )


def conv_general_dilated(
  lhs, rhs, window_strides, padding, *, precision=None, preferred_element_type=None, **conv
):
  """lax.conv_general_dilated (its other arguments by keyword, as flax's nn.Conv passes them),
  through `patches_conv` where `takes_patches_path` says so."""
  pads = _patch_pads(lhs.shape, rhs.shape, window_strides, padding, **conv)
  if pads is not None:
    return patches_conv(lhs, rhs, tuple(window_strides), pads, precision, preferred_element_type)
  return lax.conv_general_dilated(
    lhs,
    rhs,
    window_strides,
    padding,
    precision=precision,
    preferred_element_type=preferred_element_type,
    **conv,
  )
