"""Losses and metrics against the official code they reproduce (issue 12, docs/fidelity.md).

- semi-hard triplet mining vs a line-by-line NumPy port of tensorflow_addons' triplet_semihard_loss;
- SupCon's temperature / base_temperature vs a NumPy port of HobbitLong/SupContrast's SupConLoss;
- the tiled contrastive accuracy == the dense one (ties included), on one device and sharded.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from contrastive_jax import losses as L
from contrastive_jax import losses_triplet as LT
from contrastive_jax import losses_metrics as LM

# ----------------------------------------------------------------------------- references


def tfa_triplet_semihard(y_true, y_pred, margin=1.0, squared=False):
  """tensorflow_addons/losses/triplet.py triplet_semihard_loss, ported op by op to float64 NumPy."""
  emb = np.asarray(y_pred, np.float64)
  labels = np.asarray(y_true).reshape(-1, 1)
  # metric_learning.pairwise_distance
  sq = np.sum(emb**2, 1, keepdims=True) + np.sum(emb.T**2, 0, keepdims=True) - 2 * emb @ emb.T
  sq = np.maximum(sq, 0.0)
  error_mask = sq <= 0.0
  pdist = sq if squared else np.sqrt(sq + error_mask * 1e-16)
  pdist = pdist * ~error_mask
  b = labels.shape[0]
  pdist = pdist * (np.ones_like(pdist) - np.eye(b))
  adjacency = labels == labels.T
  adjacency_not = ~adjacency
  pdist_tile = np.tile(pdist, [b, 1])
  mask = np.tile(adjacency_not, [b, 1]) & (pdist_tile > pdist.T.reshape(-1, 1))
  mask_final = (mask.astype(np.float64).sum(1, keepdims=True) > 0.0).reshape(b, b).T

  def masked_minimum(data, m):
    axis_maximums = data.max(1, keepdims=True)
    return ((data - axis_maximums) * m).min(1, keepdims=True) + axis_maximums

  def masked_maximum(data, m):
    axis_minimums = data.min(1, keepdims=True)
    return ((data - axis_minimums) * m).max(1, keepdims=True) + axis_minimums

  negatives_outside = masked_minimum(pdist_tile, mask.astype(np.float64)).reshape(b, b).T
  negatives_inside = np.tile(masked_maximum(pdist, adjacency_not.astype(np.float64)), [1, b])
  semi_hard_negatives = np.where(mask_final, negatives_outside, negatives_inside)
  loss_mat = margin + pdist - semi_hard_negatives
  mask_positives = adjacency.astype(np.float64) - np.eye(b)
  return np.sum(np.maximum(loss_mat * mask_positives, 0.0)) / np.sum(mask_positives)


def official_supcon(features, labels, temperature=0.07, base_temperature=0.07):
  """HobbitLong/SupContrast losses.py SupConLoss.forward (contrast_mode='all'), in float64 NumPy."""
  features = np.asarray(features, np.float64)
  batch_size, contrast_count = features.shape[:2]
  labels = np.asarray(labels).reshape(-1, 1)
  mask = (labels == labels.T).astype(np.float64)
  contrast_feature = np.concatenate([features[:, i] for i in range(contrast_count)], 0)
  anchor_feature, anchor_count = contrast_feature, contrast_count
  anchor_dot_contrast = anchor_feature @ contrast_feature.T / temperature
  logits = anchor_dot_contrast - anchor_dot_contrast.max(1, keepdims=True)
  mask = np.tile(mask, (anchor_count, contrast_count))
  logits_mask = np.ones_like(mask)
  logits_mask[np.arange(batch_size * anchor_count), np.arange(batch_size * anchor_count)] = 0
  mask = mask * logits_mask
  exp_logits = np.exp(logits) * logits_mask
  log_prob = logits - np.log(exp_logits.sum(1, keepdims=True))
  mask_pos_pairs = mask.sum(1)
  mask_pos_pairs = np.where(mask_pos_pairs < 1e-6, 1, mask_pos_pairs)
  mean_log_prob_pos = (mask * log_prob).sum(1) / mask_pos_pairs
  loss = -(temperature / base_temperature) * mean_log_prob_pos
  return loss.reshape(anchor_count, batch_size).mean()


def _unit(x):
  x = np.asarray(x, np.float32)
  return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _close(a, b, rtol=1e-5, atol=1e-6):
  np.testing.assert_allclose(np.asarray(a, np.float64), np.asarray(b, np.float64), rtol, atol)


@pytest.fixture(scope="module")
def mesh():
  return jax.make_mesh((8,), ("data",))


def _sharded(mesh, fn, *args):
  specs = tuple(P("data") for _ in args)
  args = [jax.device_put(a, NamedSharding(mesh, s)) for a, s in zip(args, specs)]
  return jax.shard_map(fn, mesh=mesh, in_specs=specs, out_specs=P()), args


# ----------------------------------------------------------------------------- triplet


def test_semi_hard_reference_docstring_example():
  # tensorflow_addons' own doctest: 2.4142137 (margin 1.0, 'L2').
  got = LT.semi_hard_triplet(jnp.array([[0.0, 1.0], [1.0, 0.0]]), jnp.array([0, 0]), 1.0)
  _close(got, 2.4142137)


def test_semi_hard_falls_back_to_the_farthest_negative():
  # 1-D points: class 0 at {0, 1}, class 1 at {3, 10}; margin 1. Pairs (a, p):
  # (0,1): d_ap 1, negatives 3, 10 -> semi-hard 3 -> 0.   (1,0): d_ap 1, negatives 2, 9 -> 2 -> 0.
  # (3,10): d_ap 7, negatives 3, 2: none farther -> the FARTHEST, 3 -> 1 + 7 - 3 = 5
  #   (falling back to the hardest, 2, would give 6).   (10,3): d_ap 7, negatives 10, 9 -> 9 -> 0.
  x, labels = jnp.array([[0.0], [1.0], [3.0], [10.0]]), jnp.array([0, 0, 1, 1])
  _close(LT.semi_hard_triplet(x, labels, 1.0), 5 / 4)
  _close(tfa_triplet_semihard(labels, x, 1.0), 5 / 4)
  # Squared distances: (3,10): d_ap 49, negatives 9, 4 -> farthest 9 -> 1 + 49 - 9 = 41;
  # (0,1): 1 vs 9 -> 0; (1,0): 1 vs 4 -> 0; (10,3): 49 vs 100, 81 -> 81 -> 0.
  _close(LT.semi_hard_triplet(x, labels, 1.0, squared=True), 41 / 4)


@pytest.mark.parametrize("squared", [False, True])
@pytest.mark.parametrize("num_classes,margin", [(2, 0.2), (5, 0.2), (12, 1.0), (40, 0.5)])
def test_semi_hard_matches_the_reference(squared, num_classes, margin):
  rng = np.random.default_rng(num_classes)
  x = _unit(rng.normal(size=(48, 8)))
  labels = rng.integers(0, num_classes, 48).astype(np.int32)
  got = jax.jit(functools.partial(LT.semi_hard_triplet, squared=squared))(x, labels, margin)
  _close(got, tfa_triplet_semihard(labels, x, margin, squared), rtol=2e-5)


def test_semi_hard_edge_cases_match_the_reference():
  rng = np.random.default_rng(1)
  x = _unit(rng.normal(size=(6, 4)))
  # One class: no negative at all; the reference's masked maximum is the row minimum, 0.
  same = np.zeros(6, np.int32)
  _close(LT.semi_hard_triplet(x, same, 0.3), tfa_triplet_semihard(same, x, 0.3), rtol=2e-5)
  # Duplicated embeddings: zero distances (sqrt at 0) in positives and negatives.
  dup = np.concatenate([x[:3], x[:3]])
  labels = np.array([0, 1, 2, 0, 1, 1], np.int32)
  _close(LT.semi_hard_triplet(dup, labels, 0.3), tfa_triplet_semihard(labels, dup, 0.3), rtol=2e-5)
  g = jax.grad(lambda e: LT.semi_hard_triplet(e, jnp.asarray(labels), 0.3))(jnp.asarray(dup))
  assert np.all(np.isfinite(g))
  # No anchor-positive pair: 0 (the reference divides 0 by 0).
  assert float(LT.semi_hard_triplet(x, np.arange(6), 0.3)) == 0.0


def test_semi_hard_sharded_equals_one_device(mesh):
  rng = np.random.default_rng(2)
  x = _unit(rng.normal(size=(32, 8)))
  labels = rng.integers(0, 4, 32).astype(np.int32)
  fn = lambda e, lab, axis_name=None: LT.semi_hard_triplet(e, lab, 0.2, axis_name=axis_name)  # noqa: E731
  want, want_g = jax.value_and_grad(fn)(x, labels)
  sm, args = _sharded(mesh, functools.partial(fn, axis_name="data"), x, labels)
  got, got_g = jax.jit(jax.value_and_grad(sm))(*args)
  _close(got, want)
  _close(got_g, want_g, rtol=1e-4, atol=1e-6)


# ----------------------------------------------------------------------------- SupCon


def test_supcon_base_temperature_matches_official_loss():
  rng = np.random.default_rng(3)
  z = _unit(rng.normal(size=(16, 2, 8)))
  labels = rng.integers(0, 4, 16).astype(np.int32)
  for t in (0.07, 0.1, 0.5):
    got = L.supcon(z, labels, t, base_temperature=0.07)
    _close(got, official_supcon(z, labels, t, 0.07), rtol=2e-5)
    # Without base_temperature: the paper's eq. 2, i.e. the official loss at base == temperature.
    _close(L.supcon(z, labels, t), official_supcon(z, labels, t, t), rtol=2e-5)


# ----------------------------------------------------------------------------- contrastive accuracy


@pytest.mark.parametrize("tile", [1, 4, 7, 64])
def test_tiled_contrastive_accuracy_equals_dense(tile):
  rng = np.random.default_rng(4)
  z1 = rng.normal(size=(24, 8)).astype(np.float32)
  z2 = (z1 + 0.8 * rng.normal(size=(24, 8))).astype(np.float32)
  dense = L.contrastive_accuracy(z1, z2)
  assert 0.0 < float(dense) < 1.0  # some right, some wrong: the comparison is not trivial
  assert float(
    jax.jit(functools.partial(LM.contrastive_accuracy, tile_size=tile))(z1, z2)
  ) == float(dense)


def test_tiled_contrastive_accuracy_ties_take_the_first_index():
  # Duplicated rows make exact ties between a positive and other candidates; argmax's first-index
  # rule decides, in the dense and in the tiled computation alike.
  rng = np.random.default_rng(5)
  base = rng.normal(size=(4, 6)).astype(np.float32)
  z1 = np.concatenate([base, base])
  z2 = np.concatenate([base, base[::-1]])
  dense = float(L.contrastive_accuracy(z1, z2))
  for tile in (1, 3, 5, 16):
    assert float(LM.contrastive_accuracy(z1, z2, tile_size=tile)) == dense


def test_tiled_contrastive_accuracy_sharded(mesh):
  rng = np.random.default_rng(6)
  z1 = rng.normal(size=(32, 8)).astype(np.float32)
  z2 = (z1 + 0.8 * rng.normal(size=(32, 8))).astype(np.float32)
  want = float(L.contrastive_accuracy(z1, z2))
  for tile in (None, 3, 8):
    fn = functools.partial(LM.contrastive_accuracy, axis_name="data", tile_size=tile)
    sm, args = _sharded(mesh, fn, z1, z2)
    assert float(jax.jit(sm)(*args)) == want


def test_tiled_contrastive_accuracy_bad_tile():
  with pytest.raises(ValueError, match="tile_size=0"):
    LM.contrastive_accuracy(jnp.ones((2, 3)), jnp.ones((2, 3)), tile_size=0)
