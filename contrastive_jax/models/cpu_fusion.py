"""An identity that XLA:CPU cannot fuse through, for the inputs of convolutions.

Why. XLA:CPU computes a convolution's weight gradient as a forward convolution over the batch: it
transposes the layer's input from (B, H, W, C) to (C, H, W, B) first. The input of a ResNet conv is
relu(batch_norm(previous conv)), an elementwise producer that XLA fuses into every consumer,
duplicating it, and so into that transpose too: the fused loop then recomputes the normalisation
while reading with a stride of H * W * C and writing B innermost, which is several times slower
than transposing the buffer the forward pass already wrote (a plain copy, 5.9 ms against 18.5 ms
with one fused relu and 38.7 ms with a fused residual sum, 256 x 32 x 32 x 16 float32 on this
project's 2-core development machine). In the resnet_tiny SimCLR train step these fused
transposes took 32% of the device time (2026-12-04 profile, `benchmarks/train_step.py`); with
this, 760 -> 156 ms of device time per step, and the step 211.7 -> 340.1 images/s at 32 px
(README "Train step").

What. `materialize(x)` returns x through a `lax.cond` on a runtime value (whether x's first element
is NaN), both branches exactly the identity. XLA fuses nothing across a conditional, so consumers
read the buffer; `jax.lax.optimization_barrier` does not do this on CPU (XLA:CPU expands it away
before fusion). The cost is one copy of x per conv (the conditional's output buffer) and one of the
cotangent in the backward pass. Only on the CPU backend: GPU and TPU compilers emit these
transposes as tiled kernels, and there the values are left alone.

CONTRASTIVE_JAX_CPU_CONV_BARRIER=0 turns it off (read at trace time; for before/after timings).
"""

import os

import jax
import jax.numpy as jnp

ENV = "CONTRASTIVE_JAX_CPU_CONV_BARRIER"


def enabled() -> bool:
  """Whether `materialize` acts: the default backend is the CPU and the variable is not '0'."""
  return os.environ.get(ENV, "1") != "0" and jax.default_backend() == "cpu"


def _identity(v):
  return v


def _negate_twice(v):
  # Exactly the identity (negation flips the sign bit only, NaN payloads included); a branch that
  # is not a bare pass-through, so JAX keeps the conditional instead of forwarding its operand.
  return jnp.negative(jnp.negative(v))


def _explicitly_sharded(x) -> bool:
  # Under an explicit mesh (jax.sharding.AxisType.Explicit) the batch dimension is sharded in the
  # type and slicing one element of it is an error; those programs are left as they are.
  sharding = getattr(jax.typeof(x), "sharding", None)
  return sharding is not None and any(s is not None for s in sharding.spec)


def materialize(x):
  """x, unchanged, as a buffer XLA:CPU's fusion cannot see through (no-op off the CPU)."""
  if not enabled() or x.size == 0 or _explicitly_sharded(x):
    return x
  return jax.lax.cond(jnp.isnan(x.reshape(-1)[0]), _negate_twice, _identity, x)
