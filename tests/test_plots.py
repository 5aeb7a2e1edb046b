"""Each plot function writes a real PNG (non-empty, > 5 KB) from tiny inputs."""

import json
import os
import sys

import numpy as np
import pytest

from contrastive_jax.report import maps, plots

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


@pytest.mark.parametrize(
  "method, module, package", [("tsne", "sklearn", "scikit-learn"), ("umap", "umap", "umap-learn")]
)
def test_missing_package_is_an_error_naming_it_never_pca(
  tmp_path, monkeypatch, method, module, package
):
  """Issue 15: no silent fallback. A None entry in sys.modules makes its import fail."""
  for name in [m for m in sys.modules if m == module or m.startswith(module + ".")]:
    monkeypatch.delitem(sys.modules, name)
  monkeypatch.setitem(sys.modules, module, None)
  x, y = np.random.default_rng(0).normal(size=(12, 4)), np.arange(12) % 3
  with pytest.raises(ImportError, match=rf"'{method}'.*'{package}'.*pip install {package}"):
    plots.plot_embedding_2d(x, y, NAMES, str(tmp_path / "t.png"), method=method)
  assert not (tmp_path / "t.png").exists()


def _clusters(n_per=20, d=8, seed=0):
  rng = np.random.default_rng(seed)
  y = np.repeat(np.arange(3), n_per)
  return rng.normal(size=(3, d))[y] * 6 + rng.normal(size=(3 * n_per, d)), y


@pytest.mark.parametrize("method", ["tsne", "umap"])
def test_tsne_and_umap_are_the_libraries_maps(tmp_path, method):
  """The drawn map is scikit-learn's / umap-learn's own layout (same seed), and keeps clusters."""
  x, y = _clusters()
  xy, xlabel, _, how = maps.project_2d(x, method, seed=0)
  if method == "tsne":
    from sklearn.manifold import TSNE  # pylint: disable=g-import-not-at-top

    ref = TSNE(n_components=2, init="pca", random_state=0, perplexity=19.666666666666668)
  else:
    import umap  # pylint: disable=g-import-not-at-top

    ref = umap.UMAP(n_components=2, n_neighbors=15, random_state=0)
  np.testing.assert_allclose(xy, ref.fit_transform(x), rtol=1e-4, atol=1e-4)
  assert xlabel.startswith(how) and how in ("t-SNE", "UMAP")
  d = ((xy[:, None] - xy[None]) ** 2).sum(-1)
  np.fill_diagonal(d, np.inf)
  assert (y[d.argmin(1)] == y).mean() == 1.0  # each point's 2-D neighbour is of its cluster
  path = plots.plot_embedding_2d(x, y, NAMES, str(tmp_path / f"{method}.png"), method=method)
  assert _is_png(path)


def test_unlabelled_retrieval_grid(tmp_path):
  rng = np.random.default_rng(0)
  q, n = rng.uniform(size=(2, 8, 8, 3)), rng.uniform(size=(2, 3, 8, 8, 3))
  path = plots.plot_retrieval_grid(
    q,
    n,
    None,
    None,
    None,
    str(tmp_path / "u.png"),
    similarities=[[0.9, 0.8, 0.7], [0.6, 0.5, 0.4]],
    query_captions=["a.jpg", "b.jpg"],
    neighbour_captions=[["c", "d", "e"], ["f", "g", "a_very_long_file_name_indeed.png"]],
  )
  assert _is_png(path)
  with pytest.raises(ValueError, match="both query_labels and neighbour_labels"):
    plots.plot_retrieval_grid(q, n, [0, 1], None, None, str(tmp_path / "x.png"))
  with pytest.raises(ValueError, match="similarities"):
    plots.plot_retrieval_grid(q, n, None, None, None, str(tmp_path / "x.png"), similarities=[[1.0]])
  assert plots._short("a_very_long_file_name_indeed.png") == "…e_name_indeed.png"


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
