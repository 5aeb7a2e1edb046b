"""Ring (chunked, ppermute) sigmoid loss == dense sigmoid loss == float64 NumPy, values and gradients;
CLIP's tiled loss == dense, on 1 and 8 devices."""

import functools

import jax
import numpy as np
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from contrastive_jax import losses, losses_ring


def _np_sigmoid_loss(x, y, scale, bias):
  x = x / np.linalg.norm(x, axis=1, keepdims=True)
  y = y / np.linalg.norm(y, axis=1, keepdims=True)
  logits = np.exp(scale) * x @ y.T + bias
  z = 2 * np.eye(len(x)) - 1
  return np.sum(np.logaddexp(0, -z * logits)) / len(x)


def _np_clip_loss(x, y, scale):
  x = x / np.linalg.norm(x, axis=1, keepdims=True)
  y = y / np.linalg.norm(y, axis=1, keepdims=True)
  s = np.exp(scale) * x @ y.T

  def ce(m):
    mx = m.max(1, keepdims=True)
    lse = np.log(np.exp(m - mx).sum(1)) + mx[:, 0]
    return np.mean(lse - np.diag(m))

  return 0.5 * (ce(s) + ce(s.T))


def _data(n, d=8, seed=0):
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(n, d)).astype(np.float32)
  y = (x + 0.7 * rng.normal(size=(n, d))).astype(np.float32)  # correlated pairs
  return x, y


def _sharded(loss, devices, *args):
  """loss(x, y, scale, bias) inside shard_map over `devices`; value and grads w.r.t. all 4."""
  mesh = jax.make_mesh((len(devices),), ("data",), devices=devices)

  def body(x, y, s, b):
    return jax.value_and_grad(lambda *a: loss(*a, axis_name="data"), argnums=(0, 1, 2, 3))(
      x, y, s, b
    )

  f = jax.shard_map(
    body,
    mesh=mesh,
    in_specs=(P("data"), P("data"), P(), P()),
    out_specs=(P(), (P("data"),) * 2 + (P(), P())),
  )
  specs = (P("data"), P("data"), P(), P())
  args = [jax.device_put(a, NamedSharding(mesh, s)) for a, s in zip(args, specs)]
  return jax.jit(f)(*args)


@pytest.mark.parametrize(
  "num_devices,n,chunk", [(1, 12, None), (1, 12, 5), (8, 48, None), (8, 48, 4), (8, 40, 3)]
)
def test_ring_sigmoid_equals_dense(num_devices, n, chunk):
  # n / devices = 5 rows with chunk 3 (last chunk padded) and 6 rows with chunk 4: not multiples.
  x, y = _data(n)
  scale, bias = np.float32(np.log(10.0)), np.float32(-3.0)
  ring = functools.partial(losses_ring.sigmoid_loss_ring, chunk_size=chunk)
  devices = jax.devices()[:num_devices]
  v_ring, g_ring = _sharded(ring, devices, x, y, scale, bias)
  v_dense, g_dense = _sharded(losses.sigmoid_loss, devices, x, y, scale, bias)
  np.testing.assert_allclose(
    v_ring,
    _np_sigmoid_loss(x.astype(np.float64), y.astype(np.float64), float(scale), float(bias)),
    rtol=1e-5,
  )
  np.testing.assert_allclose(v_ring, v_dense, rtol=1e-6)
  for a, b in zip(g_ring, g_dense):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_ring_sigmoid_gradients_match_float64():
  # The scale and bias gradients in closed form: d/db = 1/N sum_ij -z_ij sigmoid(-z_ij l_ij).
  x, y = _data(16, seed=3)
  scale, bias = np.float32(1.0), np.float32(-2.0)
  _, (gx, gy, gs, gb) = _sharded(
    functools.partial(losses_ring.sigmoid_loss_ring, chunk_size=3), jax.devices(), x, y, scale, bias
  )
  xn = x / np.linalg.norm(x, axis=1, keepdims=True)
  yn = y / np.linalg.norm(y, axis=1, keepdims=True)
  cos = xn.astype(np.float64) @ yn.T.astype(np.float64)
  logits = np.exp(1.0) * cos - 2.0
  z = 2 * np.eye(16) - 1
  dl = -z / (1 + np.exp(z * logits)) / 16  # d loss / d logits
  np.testing.assert_allclose(gb, dl.sum(), rtol=1e-5)
  np.testing.assert_allclose(gs, (dl * np.exp(1.0) * cos).sum(), rtol=1e-5)
  assert gx.shape == x.shape and gy.shape == y.shape


def test_ring_sigmoid_rejects_bad_chunk():
  x, y = _data(4)
  with pytest.raises(ValueError, match="chunk_size"):
    losses_ring.sigmoid_loss_ring(x, y, 0.0, 0.0, chunk_size=0)


@pytest.mark.parametrize("num_devices,tile", [(1, 5), (8, 4)])
def test_clip_tiled_equals_dense(num_devices, tile):
  x, y = _data(40, seed=1)
  scale = np.float32(np.log(1 / 0.07))
  devices = jax.devices()[:num_devices]

  def dense(x, y, s, b, axis_name):
    return losses.clip_loss(x, y, s, axis_name=axis_name) + 0 * b

  def tiled(x, y, s, b, axis_name):
    return losses.clip_loss(x, y, s, axis_name=axis_name, tile_size=tile) + 0 * b

  v_d, g_d = _sharded(dense, devices, x, y, scale, np.float32(0))
  v_t, g_t = _sharded(tiled, devices, x, y, scale, np.float32(0))
  np.testing.assert_allclose(
    v_d, _np_clip_loss(x.astype(np.float64), y.astype(np.float64), float(scale)), rtol=1e-5
  )
  np.testing.assert_allclose(v_t, v_d, rtol=1e-6)
  for a, b in zip(g_t, g_d):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
