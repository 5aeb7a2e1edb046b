"""Balanced subsets (equal class counts, seeded, file round trip) and the embedding export round trip."""

import numpy as np
import pytest

from contrastive_jax.data import subsets
from contrastive_jax.report import export


def _labels():
  rng = np.random.default_rng(0)
  return rng.permutation(
    np.repeat(np.arange(10), [120, 100, 150, 100, 130, 110, 100, 140, 100, 150])
  )


def test_balanced_counts_equal():
  labels = _labels()
  idx = subsets.balanced_subset(labels, 0.1, seed=0)
  per_class = round(0.1 * labels.size / 10)  # 120
  np.testing.assert_array_equal(np.bincount(labels[idx], minlength=10), [per_class] * 10)
  assert np.all(np.diff(idx) > 0)  # sorted, no duplicates
  assert idx.dtype == np.int64


def test_at_least_one_per_class():
  labels = np.repeat(np.arange(5), 20)
  idx = subsets.balanced_subset(labels, 0.001, seed=0)
  np.testing.assert_array_equal(np.bincount(labels[idx]), [1] * 5)


def test_reproducible_for_seed_and_different_for_another():
  labels = _labels()
  a = subsets.balanced_subset(labels, 0.05, seed=1)
  b = subsets.balanced_subset(labels, 0.05, seed=1)
  c = subsets.balanced_subset(labels, 0.05, seed=2)
  np.testing.assert_array_equal(a, b)
  assert not np.array_equal(a, c)


def test_too_large_fraction_names_the_problem():
  with pytest.raises(ValueError, match="fewer"):
    subsets.balanced_subset(np.array([0] * 10 + [1] * 2), 0.9, seed=0)
  with pytest.raises(ValueError, match="fraction"):
    subsets.balanced_subset(np.array([0, 1]), 0.0, seed=0)


def test_write_and_read_back(tmp_path):
  idx = subsets.balanced_subset(_labels(), 0.01, seed=3)
  path = subsets.write_subset(
    str(tmp_path / "cifar_1pct_seed3.txt"), idx, fraction=0.01, seed=3, note="cifar10"
  )
  text = open(path).read().splitlines()
  assert text[0].startswith("#") and "fraction=0.01" in text[0] and "seed=3" in text[0]
  assert len(text) == idx.size + 1
  np.testing.assert_array_equal(subsets.read_subset(path), idx)


def test_read_rejects_garbage(tmp_path):
  p = tmp_path / "bad.txt"
  p.write_text("# header\n1\nfoo\n")
  with pytest.raises(ValueError, match="not a subset file"):
    subsets.read_subset(str(p))


def test_export_embeddings_round_trip(tmp_path):
  rng = np.random.default_rng(0)
  feats = rng.normal(size=(7, 4)).astype(np.float32)
  labels = np.arange(7) % 3
  path = export.export_embeddings(
    str(tmp_path / "emb"), feats, labels, ids=[f"img_{i}" for i in range(7)]
  )
  assert path.endswith("emb.npz")
  back = export.load_embeddings(path)
  np.testing.assert_array_equal(back["features"], feats)
  np.testing.assert_array_equal(back["labels"], labels)
  assert back["ids"].tolist() == [f"img_{i}" for i in range(7)]
  default_ids = export.load_embeddings(
    export.export_embeddings(str(tmp_path / "e2.npz"), feats, labels)
  )["ids"]
  np.testing.assert_array_equal(default_ids, np.arange(7))
  with pytest.raises(ValueError, match="export_embeddings"):
    export.export_embeddings(str(tmp_path / "bad"), feats, labels[:3])
