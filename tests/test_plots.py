"""Each plot function writes a real PNG (non-empty, > 5 KB) from tiny inputs."""

import json
import os
import warnings

import numpy as np
import pytest

from contrastive_jax.report import plots

NAMES = ["cat", "dog", "ship"]


def _is_png(path):
  with open(path, "rb") as f:
    head = f.read(8)
  return head == b"\x89PNG\r\n\x1a\n" and os.path.getsize(path) > 5 * 1024


def test_embedding_2d_pca(tmp_path):
  rng = np.random.default_rng(0)
  y = np.repeat(np.arange(3), 10)
  x = rng.normal(size=(3, 8))[y] * 3 + rng.normal(size=(30, 8))
  path = plots.plot_embedding_2d(x, y, NAMES, str(tmp_path / "sub" / "emb.png"))
  assert _is_png(path)


def test_embedding_2d_tsne_falls_back_to_pca_without_sklearn(tmp_path):
  try:
    import sklearn  # noqa: F401

    pytest.skip("scikit-learn installed: t-SNE runs for real")
  except ImportError:
    pass
  rng = np.random.default_rng(0)
  with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    path = plots.plot_embedding_2d(
      rng.normal(size=(12, 4)), np.arange(12) % 3, NAMES, str(tmp_path / "t.png"), method="tsne"
    )
  assert _is_png(path)
  assert any("scikit-learn" in str(w.message) for w in caught)


def test_retrieval_grid(tmp_path):
  rng = np.random.default_rng(0)
  q = rng.uniform(size=(2, 8, 8, 3))
  n = rng.uniform(size=(2, 3, 8, 8, 3))
  path = plots.plot_retrieval_grid(
    q, n, [0, 1], [[0, 1, 0], [1, 1, 2]], NAMES, str(tmp_path / "ret.png")
  )
  assert _is_png(path)
  gray = plots.plot_retrieval_grid(
    q[..., :1], n[..., :1], [0, 1], [[0, 1, 0], [1, 1, 2]], None, str(tmp_path / "gray.png")
  )
  assert _is_png(gray)


def test_training_curves(tmp_path):
  jsonl = tmp_path / "metrics.jsonl"
  rows = [
    {"step": s, "loss": 5.0 / (1 + s), "learning_rate": 0.1 * (1 - s / 10)} for s in range(10)
  ]
  rows += [{"step": 0, "knn_top1": 0.1}, {"step": 9, "knn_top1": 0.4, "probe_accuracy": 0.5}]
  jsonl.write_text(
    "\n".join(json.dumps(r) for r in rows) + '\n{"step": 3, "lo'
  )  # a cut-off last line
  path = plots.plot_training_curves(str(jsonl), str(tmp_path / "curves.png"))
  assert _is_png(path)
  assert plots._read_metrics(str(jsonl))["knn_top1"][1].tolist() == [0.1, 0.4]
  empty = tmp_path / "empty.jsonl"
  empty.write_text('{"step": 1}\n')
  with pytest.raises(ValueError, match="no loss"):
    plots.plot_training_curves(str(empty), str(tmp_path / "x.png"))


def test_confusion_matrix(tmp_path):
  y_true = np.array([0, 0, 1, 1, 2, 2, 2])
  y_pred = np.array([0, 1, 1, 1, 2, 0, 2])
  path = plots.plot_confusion_matrix(y_true, y_pred, NAMES, str(tmp_path / "cm.png"))
  assert _is_png(path)
