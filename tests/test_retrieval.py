"""Retrieval metrics against values worked out by hand on tiny 2-D cases."""

import numpy as np
import pytest

from contrastive_jax.evaluators import retrieval


def _at(degrees, scale=1.0):
  a = np.deg2rad(np.asarray(degrees, np.float64))
  return (np.stack([np.cos(a), np.sin(a)], axis=1) * np.reshape(scale, (-1, 1))).astype(np.float32)


# Gallery on the unit circle (lengths vary: cosine similarity must ignore them). Labels A=0, B=1,
# C=2.
GALLERY = _at([0, 10, 20, 90, 100, 180], scale=[1.0, 2.0, 0.5, 3.0, 1.0, 4.0])
GALLERY_LABELS = np.array([0, 1, 0, 1, 0, 2])


def test_hand_computed_recall_and_map_at_r():
  # q0 at 0 deg, label A: ranking g0..g5 -> labels A B A B A C, rel 1 0 1; R = 3; AP = (1 + 2/3) / 3
  # = 5/9. q1 at 92 deg, label B: ranking g3 g4 g2 g1 g5 g0 -> B A A B C A; R = 2; AP = (1 + 0) / 2
  # = 1/2. q2 at 170 deg, label B: ranking g5 g4 g3 g2 g1 g0 -> C A B A B A; R = 2; top 2 has no B:
  # AP = 0. Recall@1: q0 yes, q1 yes, q2 no -> 2/3. Recall@3: all three -> 1. Recall@5 -> 1.
  queries = _at([0, 92, 170])
  out = retrieval.retrieval_metrics(
    queries, [0, 1, 1], GALLERY, GALLERY_LABELS, ks=(1, 3, 5), batch_size=2
  )
  assert out["retrieval_recall_at_1"] == pytest.approx(2 / 3)
  assert out["retrieval_recall_at_3"] == pytest.approx(1.0)
  assert out["retrieval_recall_at_5"] == pytest.approx(1.0)
  assert out["retrieval_map_at_r"] == pytest.approx((5 / 9 + 1 / 2 + 0) / 3)  # = 19/54
  assert out["retrieval_num_queries_skipped"] == 0


def test_hand_computed_exclude_self():
  # Items at 0 (A), 10 (A), 50 (B), 60 (A); each is a query against the other three.
  # item0: ranking 1 2 3 -> A B A; R = 2; AP = 1/2; hit@1.
  # item1: ranking 0 2 3 -> A B A; R = 2; AP = 1/2; hit@1.
  # item2 (B): no other B -> R = 0 -> skipped.
  # item3: ranking 2 1 0 -> B A A; R = 2; AP = (0 + 1/2) / 2 = 1/4; miss@1, hit@2.
  x = _at([0, 10, 50, 60])
  y = np.array([0, 0, 1, 0])
  out = retrieval.retrieval_metrics(x, y, x, y, ks=(1, 2), exclude_self=True)
  assert out["retrieval_recall_at_1"] == pytest.approx(2 / 3)
  assert out["retrieval_recall_at_2"] == pytest.approx(1.0)
  assert out["retrieval_map_at_r"] == pytest.approx((1 / 2 + 1 / 2 + 1 / 4) / 3)  # = 5/12
  assert out["retrieval_num_queries_skipped"] == 1


def test_perfect_retrieval_scores_one():
  rng = np.random.default_rng(0)
  centres = rng.normal(size=(4, 16))
  y = np.repeat(np.arange(4), 25)
  x = centres[y] + 0.01 * rng.normal(size=(100, 16))
  out = retrieval.retrieval_metrics(x, y, x, y, exclude_self=True, batch_size=16)
  assert out["retrieval_map_at_r"] == pytest.approx(1.0)
  assert out["retrieval_recall_at_1"] == 1.0


def test_nearest_neighbours():
  idx, sims = retrieval.nearest_neighbours(_at([0, 92]), GALLERY, k=2)
  np.testing.assert_array_equal(idx, [[0, 1], [3, 4]])
  np.testing.assert_allclose(
    sims, [[1.0, np.cos(np.deg2rad(10))], [np.cos(np.deg2rad(2)), np.cos(np.deg2rad(8))]], rtol=1e-5
  )
  assert idx.shape == (2, 2) and sims.dtype == np.float32


def test_bad_arguments_raise():
  with pytest.raises(ValueError, match="exclude_self"):
    retrieval.retrieval_metrics(_at([0]), [0], GALLERY, GALLERY_LABELS, exclude_self=True)
  with pytest.raises(ValueError, match="dim"):
    retrieval.retrieval_metrics(np.ones((1, 3)), [0], GALLERY, GALLERY_LABELS)
