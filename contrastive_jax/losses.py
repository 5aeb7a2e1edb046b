"""Contrastive losses and representation diagnostics (pure functions).

The triplet (metric-learning) losses are in losses_triplet.py, which reuses this module's
sharding helpers; the tiled contrastive accuracy is in losses_metrics.py.

Conventions shared by every function here:
- Embeddings need not be normalised; the losses that work on cosine similarities L2-normalise in
  float32 (eps 1e-6 on the norm, so an all-zero row stays finite).
- bfloat16 / float16 inputs: similarity matmuls run in the input dtype with float32 accumulation;
  softmax statistics, reductions and the returned loss are float32.
- ``axis_name``: call inside ``jax.shard_map`` over that mesh axis with each device holding its
  shard of the batch. The function all-gathers (``lax.all_gather(tiled=True)``) what it needs,
  computes this device's anchor rows against ALL global candidates, ``psum``s and returns the loss
  of the GLOBAL batch, identical on every device. Under ``shard_map(check_vma=True)`` the gradient
  of that (device-invariant) scalar w.r.t. replicated parameters is already the global gradient: do
  not pmean it again.
- ``tile_size``: if set, the InfoNCE-type losses never materialise the similarity matrix (see
  ``losses_tiled``, ``losses_gram``); values and gradients equal the dense ones to float32 rounding.
- InfoNCE-type losses are exact in float32 in every regime (tests/test_losses_exact.py: 1e-5
  relative value, 1e-4 of the largest gradient, vs float64): each anchor's term is
  softplus(lse_neg - pos), lse_neg the log-sum-exp of its NEGATIVES only, instead of
  logsumexp(all) - pos, which cancels catastrophically when the positive dominates (aligned views,
  low temperature: loss ~1e-5 next to logits ~20); and the positive cosine is formed from the exact
  difference of the two raw embeddings (``_pair_cosine``), so its gradient survives alignment too.
"""

from __future__ import annotations


import jax
import jax.numpy as jnp
from jax import lax

from contrastive_jax import losses_gram, losses_tiled

_EPS = 1e-6
_NEG = -1e30


# ----------------------------------------------------------------------------- helpers


def _l2_normalize(x: jax.Array) -> jax.Array:
  """float32 copy of x with unit L2 rows (norm clamped at _EPS)."""
  x = x.astype(jnp.float32)
  sq = jnp.sum(x * x, axis=-1, keepdims=True)
  return x * lax.rsqrt(jnp.maximum(sq, _EPS * _EPS))


def _compute_dtype(*xs: jax.Array):
  dtype = jnp.result_type(*xs)
  return dtype if dtype in (jnp.bfloat16, jnp.float16) else jnp.float32


def _gather(x: jax.Array, axis_name: str | None) -> jax.Array:
  return x if axis_name is None else lax.all_gather(x, axis_name, axis=0, tiled=True)


def _offset(n_local: int, axis_name: str | None) -> jax.Array:
  """Global index of this device's first row (shards are contiguous blocks of the global batch)."""
  if axis_name is None:
    return jnp.int32(0)
  return (lax.axis_index(axis_name) * n_local).astype(jnp.int32)


def _psum(x, axis_name: str | None):
  return x if axis_name is None else lax.psum(x, axis_name)


def _match_vma(x: jax.Array, ref: jax.Array) -> jax.Array:
  """x + 0 typed like ref: makes a replicated operand device-varying (autodiff psums its gradient)."""
  zero = jnp.zeros_like(ref.reshape(-1)[:1], x.dtype).reshape((1,) * x.ndim)
  return x + zero


def _row_lse(rows, cols, exclude, tile_size, shift=None):
  """lse_i over rows_i . cols_j, j not in exclude[i] (the positive and self), float32."""
  return losses_tiled.row_logsumexp(rows, cols, exclude, tile_size, shift)


def _row_dot(a, b):
  return jnp.sum(a.astype(jnp.float32) * b.astype(jnp.float32), axis=-1)


def _pair_cosine(x: jax.Array, y: jax.Array) -> jax.Array:
  """(n,) float32 cos(x_i, y_i) (norms clamped at _EPS, as _l2_normalize), accurate for x ~ y.

  For well-aligned pairs the gradient of u.v w.r.t. the raw embeddings is the projection of a
  vector onto the other's tangent plane, a small difference of O(1) float32 quantities that the
  rounding of u and v swamps (1e-3 relative errors for 1e-3-aligned views). Here
  cos = (|u|^2 + |v|^2 - |u - v|^2) / 2 with u - v = (x - y) / |x| + y (1/|x| - 1/|y|) and
  1/|x| - 1/|y| = (y - x).(y + x) / (|x| |y| (|x| + |y|)): every term is formed from the exact
  difference x - y, so value and gradient keep their relative precision.
  """
  x, y = x.astype(jnp.float32), y.astype(jnp.float32)
  sx, sy = jnp.sum(x * x, -1), jnp.sum(y * y, -1)
  eps2 = _EPS * _EPS
  bx, by = sx >= eps2, sy >= eps2
  nx, ny = jnp.sqrt(jnp.maximum(sx, eps2)), jnp.sqrt(jnp.maximum(sy, eps2))
  dsq = jnp.where(
    bx & by, jnp.sum((y - x) * (y + x), -1), jnp.maximum(sy, eps2) - jnp.maximum(sx, eps2)
  )
  delta = (x - y) / nx[:, None] + y * (dsq / (nx * ny * (nx + ny)))[:, None]
  # |u|^2 is exactly 1 unless the norm was clamped (a constant, so no rounding leaks into grads).
  ux2, uy2 = jnp.where(bx, 1.0, sx / eps2), jnp.where(by, 1.0, sy / eps2)
  return 0.5 * (ux2 + uy2 - jnp.sum(delta * delta, -1))


def _neg_log_softmax(lse_neg, pos):
  """-log(e^pos / (e^pos + e^lse_neg)) = softplus(lse_neg - pos), no cancellation (module doc)."""
  return jnp.logaddexp(lse_neg - pos, 0.0)


# ----------------------------------------------------------------------------- InfoNCE family


def nt_xent(
  z1: jax.Array,
  z2: jax.Array,
  temperature=0.1,
  *,
  axis_name: str | None = None,
  tile_size: int | None = None,
) -> jax.Array:
  """SimCLR NT-Xent loss (Chen et al. 2020, "A Simple Framework for Contrastive Learning", eq. 1).

  With the 2N normalised embeddings u = [z1; z2] and s_ij = u_i . u_j / temperature, anchor i's loss
  is -log(exp(s_{i,pos(i)}) / sum_{k != i} exp(s_ik)), pos(i) = i +/- N: the other view of the same
  image; same-view and cross-view embeddings of other images are all negatives, self-similarity is
  excluded.

  Args:
    z1: (n, d) first views (n = local batch under shard_map), any float dtype, not necessarily
      normalised.
    z2: (n, d) second views, row i pairs with z1[i].
    temperature: scalar tau > 0.
    axis_name: mesh axis of the batch when called inside shard_map (see module docstring).
    tile_size: if set, tiled computation with O(N d + tile^2) memory.

  Returns:
    float32 scalar: mean over all 2N global anchors.
  """
  n = z1.shape[0]
  cdt = _compute_dtype(z1, z2)
  a, b = _l2_normalize(z1), _l2_normalize(z2)
  pos = jnp.tile(_pair_cosine(z1, z2) / temperature, 2)
  # Cosine logits lie in [-1/tau, 1/tau]: a static shift replaces the running max when safe.
  shift = losses_tiled.static_shift(1.0 / temperature)
  if axis_name is None or lax.axis_size(axis_name) == 1:
    # Rows and columns are the same set: S is the symmetric Gram matrix of x = u / sqrt(tau).
    x = (jnp.concatenate([a, b]) * lax.rsqrt(jnp.asarray(temperature, jnp.float32))).astype(cdt)
    lse = losses_gram.gram_logsumexp(x, pair_shift=n, tile_size=tile_size, shift=shift)
    return _psum(jnp.sum(_neg_log_softmax(lse, pos)), axis_name) / (2 * n)
  ga, gb = _gather(a, axis_name), _gather(b, axis_name)
  n_global = ga.shape[0]
  off = _offset(n, axis_name)
  cols = jnp.concatenate([ga, gb]).astype(cdt)
  rows = (jnp.concatenate([a, b]) / temperature).astype(cdt)
  k = jnp.arange(n, dtype=jnp.int32)
  self_col = jnp.concatenate([off + k, n_global + off + k])
  pos_col = jnp.concatenate([n_global + off + k, off + k])
  lse = _row_lse(rows, cols, jnp.stack([self_col, pos_col], 1), tile_size, shift)
  return _psum(jnp.sum(_neg_log_softmax(lse, pos)), axis_name) / (2 * n_global)


def info_nce(
  query: jax.Array,
  key: jax.Array,
  temperature,
  *,
  negatives: jax.Array | None = None,
  axis_name: str | None = None,
  tile_size: int | None = None,
) -> jax.Array:
  """MoCo InfoNCE (He et al. 2020 eq. 1; Chen et al. 2021, MoCo v3).

  Logits are cosine similarities / temperature. Without ``negatives`` (MoCo v3), query i's
  candidates are all keys of the global batch and its positive is key i. With ``negatives`` (MoCo
  v1/v2 queue), query i's candidates are its own key plus the K queue entries; other in-batch keys
  are not negatives. The key encoder's stop-gradient is the method's job.

  Args:
    query: (n, d) queries.
    key: (n, d) keys, row i is the positive of query i.
    temperature: scalar tau > 0.
    negatives: optional (K, d) queue, replicated across devices under shard_map.
    axis_name: mesh axis of the batch when called inside shard_map.
    tile_size: if set, tiled computation over the candidate columns.

  Returns:
    float32 scalar: mean over the N global queries.
  """
  n = query.shape[0]
  cdt = _compute_dtype(query, key) if negatives is None else _compute_dtype(query, key, negatives)
  q = (_l2_normalize(query) / temperature).astype(cdt)
  k = _l2_normalize(key).astype(cdt)
  pos = _pair_cosine(query, key) / temperature
  shift = losses_tiled.static_shift(1.0 / temperature)
  if negatives is None:
    cols = _gather(k, axis_name)
    n_global = cols.shape[0]
    pos_col = _offset(n, axis_name) + jnp.arange(n, dtype=jnp.int32)
    lse_neg = _row_lse(q, cols, pos_col[:, None], tile_size, shift)
  else:
    n_global = n * (1 if axis_name is None else lax.psum(1, axis_name))
    negs = _l2_normalize(negatives).astype(cdt)
    if axis_name is not None:
      negs = _match_vma(negs, q)
    lse_neg = _row_lse(q, negs, jnp.full((n, 1), -1, jnp.int32), tile_size, shift)
  return _psum(jnp.sum(_neg_log_softmax(lse_neg, pos)), axis_name) / n_global


def clip_loss(
  image_emb: jax.Array,
  text_emb: jax.Array,
  logit_scale,
  *,
  axis_name: str | None = None,
  tile_size: int | None = None,
) -> jax.Array:
  """Symmetric image-text InfoNCE of CLIP (Radford et al. 2021, Fig. 3).

  logits_ij = exp(logit_scale) * cos(image_i, text_j); the loss is the mean of the image->text and
  text->image cross-entropies with the matching pair as the target.

  Args:
    image_emb: (n, d) image embeddings.
    text_emb: (n, d) text embeddings, row i matches image i.
    logit_scale: scalar log temperature (learnable; CLIP initialises it to log(1/0.07)).
    axis_name: mesh axis of the batch when called inside shard_map.
    tile_size: if set, tiled computation.

  Returns:
    float32 scalar.
  """
  n = image_emb.shape[0]
  cdt = _compute_dtype(image_emb, text_emb)
  x, y = _l2_normalize(image_emb), _l2_normalize(text_emb)
  scale = jnp.exp(jnp.asarray(logit_scale, jnp.float32))
  gx, gy = _gather(x.astype(cdt), axis_name), _gather(y.astype(cdt), axis_name)
  n_global = gx.shape[0]
  pos_col = (_offset(n, axis_name) + jnp.arange(n, dtype=jnp.int32))[:, None]
  rx, ry = (x * scale).astype(cdt), (y * scale).astype(cdt)
  pos = scale * _pair_cosine(image_emb, text_emb)
  # The logit scale is learnable (traced): no static shift, the kernels keep a running maximum.
  i2t = _neg_log_softmax(_row_lse(rx, gy, pos_col, tile_size), pos)
  t2i = _neg_log_softmax(_row_lse(ry, gx, pos_col, tile_size), pos)
  return _psum(jnp.sum(i2t) + jnp.sum(t2i), axis_name) / (2 * n_global)


def sigmoid_loss(
  image_emb: jax.Array,
  text_emb: jax.Array,
  logit_scale,
  logit_bias,
  *,
  axis_name: str | None = None,
) -> jax.Array:
  """SigLIP pairwise sigmoid loss (Zhai et al. 2023, Algorithm 1).

  loss = -1/N sum_i sum_j log sigmoid(z_ij * (t x_i . y_j + b)), z_ij = 1 if j == i else -1,
  with t = exp(logit_scale) and x, y L2-normalised.

  Args:
    image_emb: (n, d). text_emb: (n, d), row i matches image i.
    logit_scale: scalar log of t (SigLIP initialises t' = log 10). logit_bias: scalar b (init -10).
    axis_name: mesh axis of the batch when called inside shard_map.

  Returns:
    float32 scalar: sum over the N global texts, mean over the N global images.
  """
  n = image_emb.shape[0]
  cdt = _compute_dtype(image_emb, text_emb)
  x = _l2_normalize(image_emb).astype(cdt)
  gy = _gather(_l2_normalize(text_emb).astype(cdt), axis_name)
  n_global = gy.shape[0]
  t = jnp.exp(jnp.asarray(logit_scale, jnp.float32))
  logits = t * jnp.dot(x, gy.T, preferred_element_type=jnp.float32) + logit_bias
  labels = jnp.where(
    jnp.arange(n_global)[None, :] == (_offset(n, axis_name) + jnp.arange(n))[:, None], 1.0, -1.0
  )
  loss = -jnp.sum(jax.nn.log_sigmoid(labels * logits))
  return _psum(loss, axis_name) / n_global


def supcon(
  z: jax.Array,
  labels: jax.Array,
  temperature,
  *,
  base_temperature=None,
  axis_name: str | None = None,
) -> jax.Array:
  """Supervised contrastive loss, L_out form (Khosla et al. 2020, eq. 2).

  Every view of every sample is an anchor a; P(a) are all other views whose sample has the same label
  (including a's own other views), A(a) all views but a. loss_a = -1/|P(a)| sum_{p in P(a)}
  log(exp(s_ap) / sum_{k in A(a)} exp(s_ak)), s = cos / temperature. Anchors with empty P(a) (one view
  and a unique label) are left out of the mean. With v = 2 and unique labels this is exactly NT-Xent.

  ``base_temperature``: the official SupConLoss (HobbitLong/SupContrast, losses.py) multiplies the
  paper's loss by temperature / base_temperature (base 0.07); None (the default) returns the paper's
  formula unscaled. The factor only rescales the gradient (it is the learning rate's business), so
  a method optimises the scaled loss and logs the unscaled one.

  Args:
    z: (n, v, d) embeddings, v views per sample.
    labels: (n,) integer class labels.
    temperature: scalar tau > 0.
    base_temperature: None, or the official code's base temperature (0.07).
    axis_name: mesh axis of the batch when called inside shard_map.

  Returns:
    float32 scalar: mean over the global anchors that have a positive (times temperature /
    base_temperature when that is given).
  """
  n, v, d = z.shape
  cdt = _compute_dtype(z)
  u = _l2_normalize(z).reshape(n * v, d)
  cols = _gather(u.astype(cdt), axis_name)
  col_labels = jnp.repeat(_gather(labels, axis_name), v)
  row_labels = jnp.repeat(labels, v)
  s = jnp.dot((u / temperature).astype(cdt), cols.T, preferred_element_type=jnp.float32)
  self_col = _offset(n * v, axis_name) + jnp.arange(n * v)
  is_self = jnp.arange(cols.shape[0])[None, :] == self_col[:, None]
  lse = jax.nn.logsumexp(jnp.where(is_self, _NEG, s), axis=1)
  pos_mask = (row_labels[:, None] == col_labels[None, :]) & ~is_self
  n_pos = jnp.sum(pos_mask, axis=1)
  mean_pos = jnp.sum(jnp.where(pos_mask, s, 0.0), axis=1) / jnp.maximum(n_pos, 1)
  has_pos = n_pos > 0
  total = _psum(jnp.sum(jnp.where(has_pos, lse - mean_pos, 0.0)), axis_name)
  count = _psum(jnp.sum(has_pos), axis_name)
  loss = total / jnp.maximum(count, 1)
  if base_temperature is not None:
    loss = loss * (jnp.asarray(temperature, jnp.float32) / base_temperature)
  return loss


# -------------------------------------------------------------- prediction (BYOL, SimSiam)


def negative_cosine(p: jax.Array, z: jax.Array) -> jax.Array:
  """Mean negative cosine similarity, -mean_i cos(p_i, z_i) (BYOL, Grill et al. 2020; SimSiam, Chen & He
  2021, eq. 1). The stop-gradient on z is the method's job. p, z: (n, d). Returns float32 in [-1, 1]."""
  return -jnp.mean(_row_dot(_l2_normalize(p), _l2_normalize(z)))


# ----------------------------------------------------------------------------- diagnostics


def contrastive_accuracy(
  z1: jax.Array, z2: jax.Array, *, axis_name: str | None = None
) -> jax.Array:
  """Fraction of the 2N anchors whose positive (other view) ranks first among its 2N - 1 candidates
  (same candidates as nt_xent). z1, z2: (n, d). Returns a float32 scalar; no gradient."""
  z1, z2 = lax.stop_gradient(z1), lax.stop_gradient(z2)
  n = z1.shape[0]
  a, b = _l2_normalize(z1), _l2_normalize(z2)
  ga, gb = _gather(a, axis_name), _gather(b, axis_name)
  n_global = ga.shape[0]
  off = _offset(n, axis_name)
  s = jnp.dot(jnp.concatenate([a, b]), jnp.concatenate([ga, gb]).T)
  k = jnp.arange(n, dtype=jnp.int32)
  self_col = jnp.concatenate([off + k, n_global + off + k])
  pos_col = jnp.concatenate([n_global + off + k, off + k])
  s = jnp.where(jnp.arange(2 * n_global)[None, :] == self_col[:, None], -jnp.inf, s)
  correct = jnp.argmax(s, axis=1) == pos_col
  return _psum(jnp.sum(correct.astype(jnp.float32)), axis_name) / (2 * n_global)


def alignment(z1: jax.Array, z2: jax.Array, alpha: float = 2) -> jax.Array:
  """Alignment (Wang & Isola 2020, eq. 4): mean_i ||u_i - v_i||_2^alpha of L2-normalised pairs.
  z1, z2: (n, d). Returns float32; 0 is perfect alignment, at most 2^alpha."""
  diff = _l2_normalize(z1) - _l2_normalize(z2)
  return jnp.mean(jnp.sum(diff * diff, axis=-1) ** (alpha / 2))


def uniformity(z: jax.Array, t: float = 2) -> jax.Array:
  """Uniformity (Wang & Isola 2020, eq. 5): log mean_{i<j} exp(-t ||u_i - u_j||^2), u = z normalised.
  z: (n, d), n >= 2. Returns float32; lower is more uniform (-t * 2 at best for antipodal pairs in a
  pair, about -4 for t = 2 on a high-dimensional sphere), 0 when collapsed."""
  u = _l2_normalize(z)
  n = u.shape[0]
  sq = jnp.maximum(2.0 - 2.0 * jnp.dot(u, u.T), 0.0)
  upper = jnp.triu(jnp.ones((n, n), bool), k=1)
  lse = jax.nn.logsumexp(jnp.where(upper, -t * sq, -jnp.inf))
  return lse - jnp.log(n * (n - 1) / 2)


def embedding_std(z: jax.Array) -> jax.Array:
  """SimSiam's collapse monitor (Chen & He 2021, Sec. 4.1): mean over dimensions of the per-dimension std
  of the L2-normalised embeddings. z: (n, d). About 1/sqrt(d) when healthy, 0 when collapsed."""
  return jnp.mean(jnp.std(_l2_normalize(z), axis=0))
