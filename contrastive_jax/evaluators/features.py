"""Features through a frozen embed function, computed on all devices: of a whole split (eval
batches) or of given images. An embed function is `embed(state, images) -> (b, d)` (method.embed)."""

from collections.abc import Callable, Iterable

import jax
import numpy as np

from contrastive_jax import sharding


def make_embed_step(embed: Callable, mesh) -> Callable:
  """jit(embed) with the images sharded over 'data' and the state replicated."""
  return jax.jit(embed, out_shardings=sharding.data_sharded(mesh))


def compute_features(embed_step: Callable, state, batches: Iterable[dict], mesh):
  """Embeds every batch of an eval iterator; returns (features, labels, indices) for real rows.

  Padding rows (mask 0) of the last batch are dropped; every process returns the whole split.
  """
  feats, labels, index, mask = [], [], [], []
  for host_batch in batches:
    images = sharding.global_batch({"image": host_batch["image"]}, mesh)["image"]
    f = embed_step(state, images)
    rest = sharding.global_batch({k: host_batch[k] for k in ("label", "index", "mask")}, mesh)
    f, rest = sharding.to_host((f, rest))
    feats.append(f.astype(np.float32))
    labels.append(rest["label"])
    index.append(rest["index"])
    mask.append(rest["mask"])
  keep = np.concatenate(mask) > 0
  order = np.argsort(np.concatenate(index)[keep], kind="stable")
  return (
    np.concatenate(feats)[keep][order],
    np.concatenate(labels)[keep][order],
    np.concatenate(index)[keep][order],
  )


def embed_images(embed_step: Callable, state, images, mesh, batch_size: int = 256) -> np.ndarray:
  """Features of arbitrary images (n, S, S, 3) in [0, 1] (eval view already applied), in order.

  The images go through in batches of a multiple of the mesh size; the last one is zero-padded and
  the padding rows dropped.
  """
  images = np.asarray(images, np.float32)
  nd = mesh.size
  batch = max(nd, -(-min(batch_size, len(images)) // nd) * nd)
  out = []
  for start in range(0, len(images), batch):
    chunk = images[start : start + batch]
    real = len(chunk)
    if real < batch:
      chunk = np.concatenate([chunk, np.zeros((batch - real, *chunk.shape[1:]), np.float32)])
    f = embed_step(state, sharding.global_batch({"image": chunk}, mesh)["image"])
    out.append(np.asarray(sharding.to_host(f), np.float32)[:real])
  return np.concatenate(out)
