"""Embedding export: features, labels and example ids in one .npz (for plots, retrieval demos, other tools)."""

from __future__ import annotations

import io
import os

import numpy as np

from contrastive_jax import workdir as workdir_lib


def export_embeddings(path: str, features, labels, ids=None) -> str:
  """Writes features (n, d), labels (n,) and ids (n,) to an .npz file, atomically.

  Args:
    path: output path, local or a URI (gs://...); '.npz' is appended when missing.
    features: (n, d) array (saved as float32).
    labels: (n,) int labels.
    ids: (n,) example ids (ints or strings); default range(n).

  Returns:
    The path written.
  """
  features = np.asarray(features, np.float32)
  labels = np.asarray(labels).reshape(-1)
  ids = np.arange(features.shape[0]) if ids is None else np.asarray(ids).reshape(-1)
  if ids.dtype == object:
    ids = ids.astype(str)
  if not (features.ndim == 2 and features.shape[0] == labels.shape[0] == ids.shape[0]):
    raise ValueError(
      f"export_embeddings: need features (n, d), labels (n,), ids (n,); got {features.shape}, "
      f"{labels.shape}, {ids.shape}"
    )
  path = os.fspath(path)
  if not path.endswith(".npz"):
    path += ".npz"
  buf = io.BytesIO()  # whole: tmp + rename locally, one object upload on a URI
  np.savez(buf, features=features, labels=labels, ids=ids)
  workdir_lib.write_bytes(workdir_lib.resolve(path, "export path"), buf.getvalue())
  return path


def load_embeddings(path: str) -> dict[str, np.ndarray]:
  """Reads an `export_embeddings` file: {'features', 'labels', 'ids'} (no pickled objects are allowed)."""
  with (
    workdir_lib.resolve(path, "embeddings path").open("rb") as f,
    np.load(f, allow_pickle=False) as data,
  ):
    return {k: data[k] for k in ("features", "labels", "ids")}
