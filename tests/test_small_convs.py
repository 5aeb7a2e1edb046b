"""models/small_convs.py: convolutions smaller than their kernel as a matmul over patches on CPU.

Values and both gradients against a float64 NumPy convolution; which convolutions take the path;
the ResNet at 16 px loses its swapped-operand convolutions and computes what it computed before;
at 32 px its program is unchanged."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from contrastive_jax.models import resnet, small_convs

NHWC = ("NHWC", "HWIO", "NHWC")


def _np_pads(h, w, k, s, padding):
  if padding == "SAME":
    return lax.padtype_to_pads((h, w), k, s, "SAME")
  return padding


def _np_conv(x, w, s, pads):
  """Float64 reference: y[b, p, q, o] = sum_{i, j, c} xpad[b, p*s + i, q*s + j, c] w[i, j, c, o]."""
  xp = np.pad(x, ((0, 0), pads[0], pads[1], (0, 0)))
  kh, kw, _, cout = w.shape
  ho, wo = (xp.shape[1] - kh) // s + 1, (xp.shape[2] - kw) // s + 1
  y = np.zeros((x.shape[0], ho, wo, cout))
  for i in range(kh):
    for j in range(kw):
      y += np.einsum("bpqc,co->bpqo", xp[:, i : i + s * ho : s, j : j + s * wo : s], w[i, j])
  return y


def _np_conv_grads(x, w, s, pads, g):
  """d<g, conv(x, w)>/dx and /dw in float64."""
  xp = np.pad(x, ((0, 0), pads[0], pads[1], (0, 0)))
  kh, kw = w.shape[:2]
  ho, wo = g.shape[1:3]
  dxp, dw = np.zeros_like(xp), np.zeros_like(w)
  for i in range(kh):
    for j in range(kw):
      patch = xp[:, i : i + s * ho : s, j : j + s * wo : s]
      dw[i, j] = np.einsum("bpqc,bpqo->co", patch, g)
      dxp[:, i : i + s * ho : s, j : j + s * wo : s] += np.einsum("bpqo,co->bpqc", g, w[i, j])
  h, wd = x.shape[1:3]
  return dxp[:, pads[0][0] : pads[0][0] + h, pads[1][0] : pads[1][0] + wd], dw


CASES = [  # (input size, kernel, stride, padding)
  (2, 3, 1, "SAME"),  # the last stage at 16 px: conv2
  (4, 3, 2, "SAME"),  # ... and the strided conv1 that makes its 2x2 maps
  (4, 3, 2, ((1, 1), (1, 1))),
  (1, 3, 1, "SAME"),
  (3, 5, 1, "SAME"),
  (5, 7, 2, ((3, 3), (3, 3))),
]


@pytest.mark.parametrize("size,k,s,padding", CASES)
def test_patches_path_matches_float64_values_and_gradients(size, k, s, padding):
  rng = np.random.default_rng(size * 100 + k * 10 + s)
  x = rng.normal(size=(3, size, size, 6))
  w = rng.normal(size=(k, k, 6, 5))
  dn = lax.conv_dimension_numbers(x.shape, w.shape, NHWC)
  assert small_convs.takes_patches_path(x.shape, w.shape, (s, s), padding, dimension_numbers=dn)

  def f(x, w):
    return small_convs.conv_general_dilated(x, w, (s, s), padding, dimension_numbers=dn)

  x32, w32 = jnp.asarray(x, jnp.float32), jnp.asarray(w, jnp.float32)
  y, vjp = jax.vjp(f, x32, w32)
  pads = _np_pads(size, size, (k, k), (s, s), padding)
  ref = _np_conv(x, w, s, pads)
  assert y.shape == ref.shape
  np.testing.assert_allclose(np.asarray(y), ref, atol=1e-5 * np.abs(ref).max(), rtol=0)
  g = rng.normal(size=ref.shape)
  dx, dw = vjp(jnp.asarray(g, jnp.float32))
  rdx, rdw = _np_conv_grads(x, w, s, pads, g)
  np.testing.assert_allclose(np.asarray(dx), rdx, atol=1e-5 * np.abs(rdx).max(), rtol=0)
  np.testing.assert_allclose(np.asarray(dw), rdw, atol=1e-5 * np.abs(rdw).max(), rtol=0)


def test_which_convolutions_take_the_path(monkeypatch):
  dn = NHWC
  take = small_convs.takes_patches_path
  assert take((8, 2, 2, 4), (3, 3, 4, 4), (1, 1), "SAME", dimension_numbers=dn)
  assert not take((8, 4, 4, 4), (3, 3, 4, 4), (1, 1), "SAME", dimension_numbers=dn)  # 32 px
  assert not take((8, 2, 2, 4), (1, 1, 4, 4), (2, 2), "SAME", dimension_numbers=dn)  # 1x1 conv
  assert not take((8, 2, 2, 4), (3, 3, 4, 4), (1, 1), "SAME", (2, 2), dimension_numbers=dn)
  assert not take((8, 2, 2, 4), (3, 3, 4, 4), (1, 1), "SAME", None, (2, 2), dimension_numbers=dn)
  assert not take(
    (8, 2, 2, 4), (3, 3, 2, 4), (1, 1), "SAME", dimension_numbers=dn, feature_group_count=2
  )
  assert not take(
    (8, 4, 2, 2), (4, 4, 3, 3), (1, 1), "SAME", dimension_numbers=("NCHW", "OIHW", "NCHW")
  )
  monkeypatch.setenv(small_convs.ENV, "0")
  assert not take((8, 2, 2, 4), (3, 3, 4, 4), (1, 1), "SAME", dimension_numbers=dn)
  monkeypatch.delenv(small_convs.ENV)
  monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
  assert not take((8, 2, 2, 4), (3, 3, 4, 4), (1, 1), "SAME", dimension_numbers=dn)


def _train_loss_and_grads(size: int):
  model = resnet.get_encoder("resnet_tiny")
  x = jnp.asarray(np.random.default_rng(0).uniform(size=(8, size, size, 3)), jnp.float32)
  variables = model.init(jax.random.key(0), x, train=False)

  def loss(params):
    feats, _ = model.apply({**variables, "params": params}, x, train=True, mutable=["batch_stats"])
    return jnp.sum(jnp.sin(feats))

  fn = jax.jit(jax.value_and_grad(loss))
  hlo = fn.lower(variables["params"]).compile().as_text()
  return fn(variables["params"]), hlo


def test_resnet_at_16px_swaps_no_convolution_and_computes_the_same(monkeypatch):
  (on_v, on_g), on_hlo = _train_loss_and_grads(16)
  monkeypatch.setenv(small_convs.ENV, "0")
  (off_v, off_g), off_hlo = _train_loss_and_grads(16)
  # Off: XLA's swapped-operand form (a reversed kernel window) for the last stage's convolutions.
  assert off_hlo.count("rhs_reversal") >= 3 and on_hlo.count("rhs_reversal") == 0
  assert on_hlo.count(" convolution(") < off_hlo.count(" convolution(")
  np.testing.assert_allclose(float(on_v), float(off_v), rtol=1e-5)
  for a, b in zip(jax.tree.leaves(on_g), jax.tree.leaves(off_g)):
    scale = max(float(jnp.abs(b).max()), 1e-30)
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-4 * scale, rtol=0)


def test_resnet_at_32px_compiles_the_same_program(monkeypatch):
  _, on_hlo = _train_loss_and_grads(32)
  monkeypatch.setenv(small_convs.ENV, "0")
  _, off_hlo = _train_loss_and_grads(32)
  on = _instructions(on_hlo)
  assert sum(" convolution(" in ln for ln in on) >= 10  # the comparison is of the real program
  assert on == _instructions(off_hlo)


def _instructions(hlo: str) -> list[str]:
  """The compiled program's instructions without their source metadata (Python frames differ)."""
  lines = [ln for ln in hlo.splitlines() if " = " in ln and "(" in ln]
  return [re.sub(r", metadata=\{[^}]*\}", "", ln) for ln in lines]
