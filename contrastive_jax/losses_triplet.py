"""Triplet losses (metric learning): FaceNet's fixed triplets and in-batch mined triplets.

``triplet`` scores given (anchor, positive, negative) rows; ``batch_hard_triplet`` (Hermans et al.
2017) and ``semi_hard_triplet`` (TensorFlow Addons' ``triplet_semihard_loss``) mine the triplets
inside the GLOBAL batch from labels. Unlike the InfoNCE family in losses.py these work on
Euclidean distances of the embeddings as given (no normalisation) and have no tiled kernel, which
is why they live apart: methods/triplet.py is their one user.

They share losses.py's conventions (``axis_name``: call inside ``jax.shard_map`` over that mesh
axis; candidates are all-gathered and the returned loss is the global batch's, identical on every
device) and its sharding helpers, so imports go one way: this module imports losses, never the
reverse. Pure jax, no TensorFlow.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

# The shard_map helpers every loss shares (all-gather, global row offset, psum): one definition.
from contrastive_jax.losses import _gather, _offset, _psum


def _gram_squared_distance(a, b):
  """|a_i - b_j|^2 from the Gram expansion in float32 (one matmul; can dip below 0 by rounding, which
  the two distances below treat differently)."""
  a, b = a.astype(jnp.float32), b.astype(jnp.float32)
  return (
    jnp.sum(a * a, -1)[:, None]
    + jnp.sum(b * b, -1)[None, :]
    - 2.0 * jnp.dot(a, b.T, preferred_element_type=jnp.float32)
  )


def _pairwise_distance(a, b, squared: bool):
  sq = jnp.maximum(_gram_squared_distance(a, b), 0.0)
  # Clamp inside the sqrt: d sqrt(x)/dx is infinite at 0 (self and duplicate pairs).
  return sq if squared else jnp.sqrt(jnp.maximum(sq, 1e-12))


def triplet(
  anchor: jax.Array, positive: jax.Array, negative: jax.Array, margin, *, squared: bool = True
) -> jax.Array:
  """FaceNet triplet loss (Schroff et al. 2015, eq. 1): mean_i max(d(a,p) - d(a,n) + margin, 0).

  d is the SQUARED Euclidean distance by default (as in FaceNet); squared=False uses the plain
  distance. Embeddings are used as given (FaceNet L2-normalises inside the network).

  Args:
    anchor, positive, negative: (n, d).
    margin: scalar alpha.

  Returns:
    float32 scalar.
  """

  def dist(x, y):
    sq = jnp.sum(jnp.square(x.astype(jnp.float32) - y.astype(jnp.float32)), axis=-1)
    return sq if squared else jnp.sqrt(jnp.maximum(sq, 1e-12))

  return jnp.mean(jax.nn.relu(dist(anchor, positive) - dist(anchor, negative) + margin))


def batch_hard_triplet(
  embeddings: jax.Array,
  labels: jax.Array,
  margin,
  *,
  axis_name: str | None = None,
  mining: str = "hard",
  squared: bool = False,
) -> jax.Array:
  """Triplet loss with in-batch mining (Hermans et al. 2017 batch-hard; Schroff et al. 2015 semi-hard).

  For each anchor over the (global) batch: hardest positive = farthest sample with the same label
  (self excluded). Negative: 'hard' = closest sample with another label; 'semi_hard' = the closest
  negative farther than that positive (d_an > d_ap), falling back to the hardest negative when none
  is. loss_a = max(d_ap - d_an + margin, 0), averaged over anchors that have both a positive and a
  negative. Distances are plain Euclidean by default (Hermans et al.); squared=True for squared
  distances.

  Args:
    embeddings: (n, d), used as given (normalise first if you want cosine geometry).
    labels: (n,) integer labels.
    margin: scalar.
    axis_name: mesh axis of the batch when called inside shard_map.
    mining: 'hard' or 'semi_hard'.

  Returns:
    float32 scalar.
  """
  if mining not in ("hard", "semi_hard"):
    raise ValueError(f"mining must be 'hard' or 'semi_hard', got {mining!r}.")
  n = embeddings.shape[0]
  cols = _gather(embeddings, axis_name)
  col_labels = _gather(labels, axis_name)
  dist = _pairwise_distance(embeddings, cols, squared)
  self_col = _offset(n, axis_name) + jnp.arange(n)
  is_self = jnp.arange(cols.shape[0])[None, :] == self_col[:, None]
  same = labels[:, None] == col_labels[None, :]
  pos_mask, neg_mask = same & ~is_self, ~same
  inf = jnp.float32(jnp.inf)
  d_ap = jnp.max(jnp.where(pos_mask, dist, -inf), axis=1)
  d_hard_neg = jnp.min(jnp.where(neg_mask, dist, inf), axis=1)
  if mining == "hard":
    d_an = d_hard_neg
  else:
    semi = neg_mask & (dist > d_ap[:, None])
    d_semi = jnp.min(jnp.where(semi, dist, inf), axis=1)
    d_an = jnp.where(jnp.any(semi, axis=1), d_semi, d_hard_neg)
  valid = jnp.any(pos_mask, axis=1) & jnp.any(neg_mask, axis=1)
  loss = jnp.where(valid, jax.nn.relu(jnp.where(valid, d_ap - d_an, 0.0) + margin), 0.0)
  total = _psum(jnp.sum(loss), axis_name)
  count = _psum(jnp.sum(valid), axis_name)
  return total / jnp.maximum(count, 1)


def _reference_distance(a, b, is_self, squared: bool):
  """Pairwise distances as tensorflow_addons' metric_learning.pairwise_distance computes them.

  Squared distances from the Gram expansion, clamped at 0; the square root is 0 (not sqrt(eps))
  where the squared distance is <= 0 or on the self pair, and its gradient there is 0 (the inner
  `where` keeps sqrt away from 0).
  """
  sq = _gram_squared_distance(a, b)
  zero = (sq <= 0.0) | is_self
  sq = jnp.where(zero, 0.0, sq)
  if squared:
    return sq
  return jnp.where(zero, 0.0, jnp.sqrt(jnp.where(zero, 1.0, sq)))


def semi_hard_triplet(
  embeddings: jax.Array,
  labels: jax.Array,
  margin,
  *,
  axis_name: str | None = None,
  squared: bool = False,
) -> jax.Array:
  """Triplet loss with semi-hard negatives, as TensorFlow Addons' ``triplet_semihard_loss``.

  The rule of tensorflow_addons/losses/triplet.py (FaceNet, Schroff et al. 2015, Sec. 3.2), over
  the GLOBAL batch: EVERY anchor-positive pair (a, p) (same label, p != a) is a triplet. Its negative
  is the closest n with another label that is farther than the positive (d_an > d_ap, the reference's
  `negatives_outside`); when a has no such negative, the FARTHEST negative of a (largest d_an, the
  reference's `negatives_inside`), which makes that triplet easy rather than batch-hard. With no
  negative at all the reference's masked maximum is 0 (the row minimum). loss = sum over the pairs of
  max(margin + d_ap - d_an, 0) / number of pairs (0 when the batch has no pair; the reference
  returns NaN there).

  Args:
    embeddings: (n, d), used as given (the reference expects L2-normalised embeddings).
    labels: (n,) integer labels.
    margin: scalar (the reference's default is 1.0 with 'L2'; FaceNet uses 0.2 with squared L2).
    axis_name: mesh axis of the batch when called inside shard_map.
    squared: False = Euclidean distance (the reference's distance_metric='L2', its default);
      True = squared Euclidean ('squared-L2', FaceNet's eq. 1). The margin is in these units.

  Returns:
    float32 scalar.
  """
  n = embeddings.shape[0]
  cols = _gather(embeddings, axis_name)
  col_labels = _gather(labels, axis_name)
  m = cols.shape[0]
  self_col = _offset(n, axis_name) + jnp.arange(n)
  is_self = jnp.arange(m)[None, :] == self_col[:, None]
  dist = _reference_distance(embeddings, cols, is_self, squared)
  same = labels[:, None] == col_labels[None, :]
  pos_mask, neg_mask = same & ~is_self, ~same
  # For each anchor row, its negatives' distances in ascending order (non-negatives last, +inf);
  # the semi-hard negative of pair (a, p) is the first of them > d_ap: a binary search per pair,
  # O(n m) memory instead of the reference's (m^2, m) tiled mask.
  order = jnp.argsort(jnp.where(neg_mask, lax.stop_gradient(dist), jnp.inf), axis=1)
  neg_sorted = jnp.take_along_axis(jnp.where(neg_mask, dist, jnp.inf), order, axis=1)
  first_farther = jax.vmap(lambda row, q: jnp.searchsorted(row, q, side="right"))(
    lax.stop_gradient(neg_sorted), lax.stop_gradient(dist)
  )
  n_neg = jnp.sum(neg_mask, axis=1, keepdims=True)
  has_semi = first_farther < n_neg
  d_semi = jnp.take_along_axis(neg_sorted, jnp.minimum(first_farther, m - 1), axis=1)
  d_far = jnp.max(jnp.where(neg_mask, dist, -jnp.inf), axis=1, keepdims=True)
  d_far = jnp.where(n_neg > 0, d_far, 0.0)
  d_an = jnp.where(has_semi, jnp.where(has_semi, d_semi, 0.0), d_far)
  loss = jnp.where(pos_mask, jax.nn.relu(margin + dist - d_an), 0.0)
  total = _psum(jnp.sum(loss), axis_name)
  count = _psum(jnp.sum(pos_mask), axis_name)
  return total / jnp.maximum(count, 1)
