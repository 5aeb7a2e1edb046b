"""2-D maps of embeddings: PCA (NumPy), t-SNE (scikit-learn), UMAP (umap-learn).

A map whose package is missing is an ImportError naming the package (`require`), never another map.
"""

from __future__ import annotations

import importlib
import warnings

import numpy as np

# 2-D embedding maps, and the module (and pip package) each one needs beyond NumPy.
MAPS = ("pca", "tsne", "umap")
_PACKAGES = {"tsne": ("sklearn.manifold", "scikit-learn"), "umap": ("umap", "umap-learn")}


def _pca_2d(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Projection on the first two principal components and their share of the variance."""
  x = x - x.mean(axis=0)
  _, s, vt = np.linalg.svd(x, full_matrices=False)
  var = s**2 / max(float((s**2).sum()), 1e-12)
  comps = vt[:2]
  if comps.shape[0] < 2:  # 1-D features: pad a zero axis
    comps = np.concatenate([comps, np.zeros_like(comps)])
    var = np.concatenate([var, [0.0]])
  return x @ comps.T, var[:2]


def require(method: str):
  """The module a map needs (sklearn.manifold, umap); an ImportError naming the package otherwise.

  Checked before any feature is computed (protocols/visualize.py), and again when drawing.
  """
  if method not in _PACKAGES:
    return None
  module, package = _PACKAGES[method]
  try:
    return importlib.import_module(module)
  except ImportError as e:
    raise ImportError(
      f"The {method!r} embedding map needs the package {package!r}, which is not installed "
      f"({e}). Install it (`pip install {package}`; it is in requirements.txt) or leave "
      f"{method!r} out of config.embedding_maps."
    ) from e


def project_2d(x: np.ndarray, method: str, seed: int = 0):
  """(xy (n, 2), x label, y label, name) of features x (n, d) under a map of MAPS."""
  if method == "tsne":
    manifold = require("tsne")
    xy = manifold.TSNE(
      n_components=2,
      init="pca",
      random_state=seed,
      perplexity=min(30.0, max(2.0, (x.shape[0] - 1) / 3)),
    ).fit_transform(x)
    return xy, "t-SNE 1", "t-SNE 2", "t-SNE"
  if method == "umap":
    umap = require("umap")
    # n_neighbors must stay below the number of points; 15 is UMAP's default.
    reducer = umap.UMAP(
      n_components=2, n_neighbors=max(2, min(15, x.shape[0] - 1)), random_state=seed
    )
    with warnings.catch_warnings():  # "n_jobs overridden by random_state": the seed is wanted
      warnings.filterwarnings("ignore", message=".*n_jobs.*")
      xy = reducer.fit_transform(x)
    return np.asarray(xy), "UMAP 1", "UMAP 2", "UMAP"
  xy, var = _pca_2d(x)
  return (
    xy,
    f"PC 1 ({100 * var[0]:.1f}% of variance)",
    f"PC 2 ({100 * var[1]:.1f}% of variance)",
    "PCA",
  )
