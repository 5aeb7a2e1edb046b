"""Zero-shot classification and image-text retrieval on joint-space embeddings (pure functions).

Zero-shot (CLIP, Radford et al. 2021, Sec. 3.1.4 and the prompt-ensembling notebook): the embedding
of class c is the mean of the L2-normalised text embeddings of its T prompts ("a photo of a {c}."),
normalised again; an image is classified by cosine similarity to the class embeddings.

Image-text retrieval Recall@K: image -> text (i2t), the fraction of images with their caption among
the K most similar captions; text -> image (t2i), the fraction of captions with their image among
the K most similar images. Captions are compared by `caption_ids`: equal texts share an id (a set
captioned from templates repeats texts), and retrieving any item with the query's id is a hit.
The i2t gallery holds each distinct caption once (K copies of one text would otherwise fill the top
K); t2i keeps every caption as a query. Nearest neighbours come from evaluators/retrieval.py.
"""

from collections.abc import Sequence

import numpy as np

from contrastive_jax.evaluators import retrieval
from contrastive_jax.evaluators.knn import l2_normalize


def class_embeddings(text_emb, num_classes: int, num_templates: int) -> np.ndarray:
  """(C, d) unit class embeddings from (C * T, d) prompt embeddings ordered class-major.

  Args:
    text_emb: prompt embeddings, row c * T + t = template t of class c (captions.fill's order).
    num_classes: C.
    num_templates: T.

  Returns:
    float32 (C, d): normalise, mean over the T templates, normalise again.
  """
  e = np.asarray(text_emb, np.float32)
  if e.shape[0] != num_classes * num_templates:
    raise ValueError(
      f"class_embeddings: {e.shape[0]} prompt embeddings for {num_classes} classes x "
      f"{num_templates} templates."
    )
  e = l2_normalize(e).reshape(num_classes, num_templates, -1).mean(axis=1)
  return l2_normalize(e)


def classify(image_emb, labels, class_emb, ks: Sequence[int] = (1, 5)) -> dict[str, float]:
  """Zero-shot top-k accuracy: {'zero_shot_top{k}': fraction} for each k < number of classes
  (top-k over k >= C classes is trivially 1 and is left out; top-1 is always reported)."""
  x = l2_normalize(np.asarray(image_emb, np.float32))
  logits = x @ np.asarray(class_emb, np.float32).T
  labels = np.asarray(labels).reshape(-1)
  if logits.shape[0] != labels.shape[0]:
    raise ValueError("classify: image embeddings and labels differ in length.")
  # Rank of the true class: how many classes score strictly higher (ties count in its favour).
  true = logits[np.arange(len(labels)), labels]
  rank = np.sum(logits > true[:, None], axis=1)
  out = {}
  for k in ks:
    if k == 1 or k < logits.shape[1]:
      out[f"zero_shot_top{k}"] = float(np.mean(rank < k)) if len(labels) else 0.0
  return out


def recall_at_k(query, gallery, query_ids, gallery_ids, ks: Sequence[int]) -> dict[int, float]:
  """{k: fraction of queries with a gallery item of their id among their k most similar}."""
  ks = tuple(int(k) for k in ks)
  idx, _ = retrieval.nearest_neighbours(query, gallery, max(ks))
  hit = np.asarray(gallery_ids)[idx] == np.asarray(query_ids)[:, None]
  return {k: float(hit[:, :k].any(axis=1).mean()) for k in ks}


def image_text_retrieval(
  image_emb, text_emb, caption_ids, ks: Sequence[int] = (1, 5, 10)
) -> dict[str, float]:
  """i2t and t2i Recall@K of paired embeddings (row i of both is pair i).

  Args:
    image_emb: (n, d) image embeddings.
    text_emb: (n, d) caption embeddings, row i captions image i.
    caption_ids: (n,) int: equal ids for equal captions (or unique ids).
    ks: the K values.

  Returns:
    {'i2t_recall@K': ..., 't2i_recall@K': ...}.
  """
  ids = np.asarray(caption_ids).reshape(-1)
  if not len(ids) == len(image_emb) == len(text_emb):
    raise ValueError("image_text_retrieval: images, texts and caption_ids differ in length.")
  _, first = np.unique(ids, return_index=True)
  out = {}
  for k, v in recall_at_k(image_emb, np.asarray(text_emb)[first], ids, ids[first], ks).items():
    out[f"i2t_recall@{k}"] = v
  for k, v in recall_at_k(text_emb, image_emb, ids, ids, ks).items():
    out[f"t2i_recall@{k}"] = v
  return out
