"""Frozen-encoder features of a whole split, computed on all devices."""

from collections.abc import Callable, Iterable

import jax
import numpy as np

from contrastive_jax import sharding


def make_embed_step(method, mesh) -> Callable:
  """jit(embed) with the images sharded over 'data' and the state replicated."""
  return jax.jit(method.embed, out_shardings=sharding.data_sharded(mesh))


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
