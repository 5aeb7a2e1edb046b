"""SigLIP's sigmoid loss computed chunk by chunk around a ring of devices (Zhai et al. 2023, Sec. 3.3;
big_vision's `chunked` sigmoid loss).

The dense loss (losses.sigmoid_loss) all-gathers every text embedding onto every device and forms the
(n_local x N) logits at once. Here no device ever holds the other tower's full batch:

  step 0      each device scores its n images against its own n texts (the positives are on the
              diagonal of this block);
  step k >= 1 every device passes the text block it holds to the next device (`lax.ppermute`, d ->
              d + 1 mod D) and scores its images against it (all negatives: after k passes device d
              holds the texts of device d - k).

After D - 1 passes every (image, text) pair of the global batch has been scored exactly once; the
per-device sums are psum'd and divided by the global batch, as in the dense loss. Within a device,
`chunk_size` texts are scored at a time, each block under `jax.checkpoint`, so the live logits are
(n x chunk_size) instead of (n x n) (a batch that is not a multiple of the chunk is padded and the
padding masked). Gradients are plain autodiff: the transpose of ppermute is the ppermute back, so
each text embedding's gradient returns to the device that owns it, exact to float32 rounding
(tests/test_losses_ring.py checks values and gradients against the dense loss).

Memory per device: O(n d) embeddings in flight plus the text blocks kept for the backward (D blocks
of n x d, no more than the all-gather's N x d) and O(n x chunk) logits, instead of O(n x N) logits.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

_EPS = 1e-6


def _l2_normalize(x: jax.Array) -> jax.Array:
  x = x.astype(jnp.float32)
  sq = jnp.sum(x * x, axis=-1, keepdims=True)
  return x * lax.rsqrt(jnp.maximum(sq, _EPS * _EPS))


def _block_loss(x, y, t, b, positive: bool, chunk: int | None) -> jax.Array:
  """sum_ij -log sigmoid(z_ij (t x_i . y_j + b)) over one (n x m) block, `chunk` columns at a time.

  z_ij = +1 on the diagonal when `positive` (x_i and y_i are a pair), -1 elsewhere.
  """
  n, m = x.shape[0], y.shape[0]
  chunk = m if chunk is None else min(int(chunk), m)
  pad = (-m) % chunk
  tiles = jnp.pad(y, [(0, pad), (0, 0)]).reshape(-1, chunk, y.shape[1])
  starts = jnp.arange(tiles.shape[0], dtype=jnp.int32) * chunk
  rows = jnp.arange(n, dtype=jnp.int32)

  @jax.checkpoint
  def tile_loss(y_t, col0):
    logits = t * jnp.dot(x, y_t.T, preferred_element_type=jnp.float32) + b
    cols = col0 + jnp.arange(chunk, dtype=jnp.int32)
    z = jnp.where(positive & (cols[None, :] == rows[:, None]), 1.0, -1.0)
    return jnp.sum(jnp.where(cols[None, :] < m, -jax.nn.log_sigmoid(z * logits), 0.0))

  if tiles.shape[0] == 1:
    return tile_loss(tiles[0], starts[0])
  _, per_tile = lax.scan(lambda c, xs: (c, tile_loss(*xs)), None, (tiles, starts))
  return jnp.sum(per_tile)


def sigmoid_loss_ring(
  image_emb: jax.Array,
  text_emb: jax.Array,
  logit_scale,
  logit_bias,
  *,
  axis_name: str | None = None,
  chunk_size: int | None = None,
) -> jax.Array:
  """The SigLIP loss of losses.sigmoid_loss, computed around the ring of devices on `axis_name`.

  Args:
    image_emb: (n, d) this device's image embeddings (any float dtype, not necessarily normalised).
    text_emb: (n, d) this device's text embeddings, row i matches image i.
    logit_scale: scalar log t (SigLIP initialises t' = log 10). logit_bias: scalar b (init -10).
    axis_name: mesh axis of the batch when called inside shard_map; None = one device.
    chunk_size: texts scored per block within a device (None = the whole local block); need not
      divide n.

  Returns:
    float32 scalar, identical on every device: -1/N sum_{i,j} log sigmoid(z_ij (t x_i . y_j + b))
    over the N x N pairs of the global batch.
  """
  if chunk_size is not None and int(chunk_size) <= 0:
    raise ValueError(
      f"chunk_size={chunk_size} must be a positive number of texts (config.method_args."
      f"loss_chunk_size), or None for the whole local block."
    )
  dtype = jnp.result_type(image_emb, text_emb)
  cdt = dtype if dtype in (jnp.bfloat16, jnp.float16) else jnp.float32
  x = _l2_normalize(image_emb).astype(cdt)
  y = _l2_normalize(text_emb).astype(cdt)
  t = jnp.exp(jnp.asarray(logit_scale, jnp.float32))
  b = jnp.asarray(logit_bias, jnp.float32)
  n = x.shape[0]
  total = _block_loss(x, y, t, b, True, chunk_size)
  if axis_name is None:
    return total / n
  devices = lax.axis_size(axis_name)
  ring = [(d, (d + 1) % devices) for d in range(devices)]

  def hop(y_held, _):
    y_next = lax.ppermute(y_held, axis_name, ring)
    return y_next, _block_loss(x, y_next, t, b, False, chunk_size)

  if devices > 1:
    _, negatives = lax.scan(hop, y, None, length=devices - 1)
    total = total + jnp.sum(negatives)
  return lax.psum(total, axis_name) / (n * devices)
