"""Image retrieval metrics on frozen features: Recall@K and mAP@R with cosine similarity.

Recall@K (the metric-learning usage, e.g. Song et al. 2016): the fraction of queries with at least
one gallery item of the query's label among their K most similar gallery items.

mAP@R (Musgrave et al. 2020, "A Metric Learning Reality Check"): for a query with R gallery items of
  its label, AP@R = (1 / R) * sum_{i=1..R} P(i) * rel(i), where rel(i) is 1 if the i-th most similar
  gallery item has the query's label and P(i) is the precision of the top i. mAP@R is the mean over
  queries.

Queries with no gallery item of their label (R = 0) cannot be retrieved for and are left out of
every metric (their count is reported as 'retrieval_num_queries_skipped'). With exclude_self=True
the query set IS the gallery (query i is gallery item i) and each query's own item is removed from
its ranking and from its R.

Cost: mAP@R ranks the top max(R) gallery items of every query (lax.top_k). That is fast on an
accelerator; on 2 CPU cores, 10k queries against a 50k gallery of 10 classes (R = 5000) take about a
minute.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from contrastive_jax.evaluators.knn import l2_normalize


@functools.partial(jax.jit, static_argnames=("k", "exclude_self"))
def _topk_chunk(query, gallery, offset, *, k, exclude_self):
  sims = query @ gallery.T
  if exclude_self:
    own = offset + jnp.arange(query.shape[0])
    sims = jnp.where(jnp.arange(gallery.shape[0])[None, :] == own[:, None], -jnp.inf, sims)
  return jax.lax.top_k(sims, k)


def _iter_topk(query, gallery, k, exclude_self, batch_size):
  """Yields (start, indices, similarities) of the top-k gallery rows for query chunks of batch_size."""
  n = query.shape[0]
  batch = max(1, min(batch_size, n))
  gallery = jnp.asarray(gallery)
  for start in range(0, n, batch):
    chunk = query[start : start + batch]
    real = chunk.shape[0]
    if real < batch:  # pad so one compiled program serves all chunks
      chunk = np.concatenate([chunk, np.zeros((batch - real, chunk.shape[1]), np.float32)])
    sims, idx = _topk_chunk(jnp.asarray(chunk), gallery, start, k=k, exclude_self=exclude_self)
    yield start, np.asarray(idx)[:real].astype(np.int64), np.asarray(sims)[:real]


def nearest_neighbours(query_features, gallery_features, k: int, *, batch_size: int = 256):
  """The k most cosine-similar gallery items of each query.

  Args:
    query_features: (n, d).
    gallery_features: (m, d).
    k: neighbours per query (capped at m).
    batch_size: query rows per step (bounds the (batch_size, m) similarity block).

  Returns:
    (indices (n, k) int64 into the gallery, similarities (n, k) float32), most similar first.
  """
  q = l2_normalize(query_features)
  g = l2_normalize(gallery_features)
  if q.shape[1] != g.shape[1]:
    raise ValueError(f"nearest_neighbours: query dim {q.shape[1]} != gallery dim {g.shape[1]}")
  parts = list(_iter_topk(q, g, min(int(k), g.shape[0]), False, batch_size))
  return np.concatenate([p[1] for p in parts]), np.concatenate([p[2] for p in parts])


def retrieval_metrics(
  query_features,
  query_labels,
  gallery_features,
  gallery_labels,
  ks: Sequence[int] = (1, 5, 10),
  exclude_self: bool = False,
  *,
  batch_size: int = 256,
) -> dict[str, float]:
  """Recall@K and mAP@R of cosine-similarity retrieval.

  Args:
    query_features: (n, d); query_labels: (n,) int.
    gallery_features: (m, d); gallery_labels: (m,) int.
    ks: K values for Recall@K.
    exclude_self: the queries are the gallery (n == m, same order); drop each query's own item.
    batch_size: query rows per step.

  Returns:
    {'retrieval_recall_at_{k}': ..., 'retrieval_map_at_r': ..., 'retrieval_num_queries_skipped': int}.
  """
  q = l2_normalize(query_features)
  g = l2_normalize(gallery_features)
  ql = np.asarray(query_labels).reshape(-1)
  gl = np.asarray(gallery_labels).reshape(-1)
  if q.shape[0] != ql.shape[0] or g.shape[0] != gl.shape[0]:
    raise ValueError("retrieval_metrics: features and labels must have the same number of rows")
  if q.shape[1] != g.shape[1]:
    raise ValueError(f"retrieval_metrics: query dim {q.shape[1]} != gallery dim {g.shape[1]}")
  if exclude_self and q.shape[0] != g.shape[0]:
    raise ValueError(
      "retrieval_metrics: exclude_self=True needs the query set to be the gallery (n == m)"
    )
  ks = tuple(int(k) for k in ks)
  if not ks or min(ks) < 1:
    raise ValueError(f"retrieval ks must be positive integers, got {ks}")

  # R per query: gallery items with the query's label (minus the query itself when it is in the
  # gallery).
  classes, counts = np.unique(gl, return_counts=True)
  pos = np.searchsorted(classes, ql)
  found = (pos < classes.size) & (classes[np.minimum(pos, classes.size - 1)] == ql)
  r = np.where(found, counts[np.minimum(pos, classes.size - 1)], 0) - int(exclude_self)
  valid = r > 0
  usable = g.shape[0] - int(
    exclude_self
  )  # the own item sorts last at -inf and is never in the top k
  depth = min(max(max(ks), int(r.max(initial=0))), usable)
  if depth < 1:
    raise ValueError("retrieval_metrics: the gallery has no item to retrieve")

  # Chunk by chunk so that the (queries, depth) relevance table never exists in full.
  found_by_k = np.zeros((len(ks), q.shape[0]), bool)
  ap = np.zeros(q.shape[0], np.float64)
  ranks = np.arange(1, depth + 1)
  for start, idx, _ in _iter_topk(q, g, depth, exclude_self, batch_size):
    stop = start + idx.shape[0]
    rel = gl[idx] == ql[start:stop, None]  # (chunk, depth)
    precision = np.cumsum(rel, axis=1) / ranks
    within_r = ranks[None, :] <= r[start:stop, None]
    ap[start:stop] = (precision * (rel & within_r)).sum(axis=1) / np.maximum(r[start:stop], 1)
    for i, k in enumerate(ks):
      found_by_k[i, start:stop] = rel[:, : min(k, depth)].any(axis=1)

  n_valid = int(valid.sum())
  out = {}
  for i, k in enumerate(ks):
    out[f"retrieval_recall_at_{k}"] = float(found_by_k[i, valid].mean()) if n_valid else 0.0
  out["retrieval_map_at_r"] = float(ap[valid].mean()) if n_valid else 0.0
  out["retrieval_num_queries_skipped"] = int(q.shape[0] - n_valid)
  return out
