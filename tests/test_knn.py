"""kNN evaluator: separable clusters score 100 %, random labels score about chance, 8 devices == 1 device."""

import jax
import numpy as np
import pytest

from contrastive_jax.evaluators import knn


def _clusters(n_per_class, num_classes, dim, rng, spread=0.05):
  centres = rng.normal(size=(num_classes, dim))
  labels = np.repeat(np.arange(num_classes), n_per_class)
  feats = centres[labels] + spread * rng.normal(size=(labels.size, dim))
  return feats.astype(np.float32), labels.astype(np.int32)


def test_separable_clusters_score_100_percent():
  rng = np.random.default_rng(0)
  x, y = _clusters(50, 5, 16, rng)
  xt, yt = _clusters(
    20, 5, 16, np.random.default_rng(0)
  )  # same centres (same seed), new noise below
  xt = xt + 0.05 * rng.normal(size=xt.shape).astype(np.float32)
  out = knn.knn_classify(x, y, xt, yt, num_classes=5, ks=(1, 10, 20), test_batch_size=32)
  assert out["knn_top1_k1"] == 1.0
  assert out["knn_top1_k10"] == 1.0
  assert out["knn_top1_k20"] == 1.0
  assert out["knn_top1"] == out["knn_top1_k1"]


def test_random_labels_score_about_chance():
  rng = np.random.default_rng(1)
  x = rng.normal(size=(2000, 32)).astype(np.float32)
  y = rng.integers(0, 10, size=2000)
  xt = rng.normal(size=(1000, 32)).astype(np.float32)
  yt = rng.integers(0, 10, size=1000)
  acc = knn.knn_classify(x, y, xt, yt, num_classes=10, ks=(20,))["knn_top1"]
  assert 0.05 < acc < 0.16


def test_weighting_prefers_close_neighbours():
  # Test point at [1, 0]; one class-0 neighbour very close, two class-1 neighbours farther away.
  # Unweighted majority with k=3 would say 1; exp(sim / 0.07) weighting says 0.
  bank = np.array([[1.0, 0.0], [0.6, 0.8], [0.6, -0.8]], np.float32)
  labels = np.array([0, 1, 1])
  out = knn.knn_classify(
    bank, labels, np.array([[1.0, 0.0]]), np.array([0]), num_classes=2, ks=(3,)
  )
  assert out["knn_top1"] == 1.0
  out = knn.knn_classify(
    bank, labels, np.array([[1.0, 0.0]]), np.array([0]), num_classes=2, ks=(3,), temperature=100.0
  )
  assert out["knn_top1"] == 0.0


def test_k_larger_than_bank_uses_whole_bank():
  bank = np.eye(3, dtype=np.float32)
  out = knn.knn_classify(bank, [0, 1, 2], bank, [0, 1, 2], num_classes=3, ks=(1, 200))
  assert out == {"knn_top1_k1": 1.0, "knn_top1_k200": 1.0, "knn_top1": 1.0}


@pytest.mark.parametrize("n_train", [803, 8])
def test_eight_devices_equal_one_device(n_train):
  assert jax.device_count() == 8
  rng = np.random.default_rng(2)
  x = rng.normal(size=(n_train, 24)).astype(np.float32)
  y = rng.integers(0, 7, size=n_train)
  xt = rng.normal(size=(301, 24)).astype(np.float32)
  yt = rng.integers(0, 7, size=301)
  # Make accuracies non-trivial: some test points are noisy copies of bank rows.
  src = rng.integers(0, n_train, 150)
  xt[:150] = x[src] + 0.3 * rng.normal(size=(150, 24))
  yt[:150] = y[src]
  ks = (1, 5, 20, 200)
  single = knn.knn_classify(x, y, xt, yt, num_classes=7, ks=ks, test_batch_size=64)
  mesh = jax.make_mesh((8,), ("data",))
  multi = knn.knn_classify(x, y, xt, yt, num_classes=7, ks=ks, mesh=mesh, test_batch_size=64)
  assert single == multi
  assert single["knn_top1_k1"] > 0.3


def test_bad_arguments_raise():
  with pytest.raises(ValueError, match="ks"):
    knn.knn_classify(np.ones((2, 2)), [0, 1], np.ones((1, 2)), [0], num_classes=2, ks=(0,))
  with pytest.raises(ValueError, match="dim"):
    knn.knn_classify(np.ones((2, 2)), [0, 1], np.ones((1, 3)), [0], num_classes=2)
