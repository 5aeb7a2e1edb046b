"""evaluators.features: an embed function over a whole split or given images, on all devices, equals
the embed function applied on the host (padding rows dropped, order kept)."""

import jax
import numpy as np

from contrastive_jax import sharding
from contrastive_jax.evaluators import features


def _embed(state, images):
  return images.reshape(images.shape[0], -1) @ state["w"]


def test_embed_images_pads_and_keeps_order():
  rng = np.random.default_rng(0)
  mesh = sharding.make_mesh()
  w = rng.normal(size=(12, 5)).astype(np.float32)
  state = jax.device_put({"w": w}, sharding.replicated(mesh))
  images = rng.uniform(size=(19, 2, 2, 3)).astype(np.float32)  # not a multiple of 8 devices
  step = features.make_embed_step(_embed, mesh)
  got = features.embed_images(step, state, images, mesh, batch_size=8)
  want = images.reshape(19, -1).astype(np.float64) @ w.astype(np.float64)
  assert got.shape == (19, 5)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_compute_features_drops_padding_and_sorts_by_index():
  rng = np.random.default_rng(1)
  mesh = sharding.make_mesh()
  w = rng.normal(size=(12, 4)).astype(np.float32)
  state = jax.device_put({"w": w}, sharding.replicated(mesh))
  images = rng.uniform(size=(13, 2, 2, 3)).astype(np.float32)
  order = rng.permutation(13)
  batches = []
  for start in (0, 8):  # two batches of 8 rows; the last has 3 padding rows (index -1, mask 0)
    idx = order[start : start + 8]
    pad = 8 - len(idx)
    batches.append(
      {
        "image": np.concatenate([images[idx], np.zeros((pad, 2, 2, 3), np.float32)]),
        "label": np.concatenate([idx % 3, np.zeros(pad, np.int64)]).astype(np.int32),
        "index": np.concatenate([idx, -np.ones(pad, np.int64)]),
        "mask": np.concatenate([np.ones(len(idx)), np.zeros(pad)]).astype(np.float32),
      }
    )
  feats, labels, ids = features.compute_features(
    features.make_embed_step(_embed, mesh), state, batches, mesh
  )
  np.testing.assert_array_equal(ids, np.arange(13))
  np.testing.assert_array_equal(labels, np.arange(13) % 3)
  np.testing.assert_allclose(feats, images.reshape(13, -1) @ w, rtol=1e-5, atol=1e-5)
