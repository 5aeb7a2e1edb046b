"""Image-text evaluation batches: held-out (image, caption) pairs for retrieval, and labelled images
of any dataset (including the synthetic compositional set) for zero-shot classification.

Both are finite and padded like data/pipeline.eval_iterator: every process yields the same number
of batches, `mask` marks the real rows, `index` is the position in the split (-1 for padding).
"""

import math
from typing import Any

import numpy as np
import tensorflow as tf

from contrastive_jax.data import augment, captions, image_text, pipeline
from contrastive_jax.data.catalog import _process_defaults, _synthetic_sizes
from contrastive_jax.data.pipeline import _options, _shard_range, _to_float_rgb


def _padded(ds, offset, num_batches, batch_size, keys_shapes):
  """Yields dict batches with mask/index, padded so every process yields num_batches batches."""
  produced = 0
  for b in ds.as_numpy_iterator():
    b["index"] = b["index"] + offset  # shard positions -> split positions
    produced += 1
    yield _pad(b, batch_size)
  for _ in range(num_batches - produced):
    empty = {k: np.zeros((0, *s), d) for k, (s, d) in keys_shapes.items()}
    yield _pad({**empty, "index": np.zeros((0,), np.int64)}, batch_size)


def _pad(b: dict, batch_size: int) -> dict:
  real = len(b["index"])
  pad = batch_size - real
  out = {k: np.concatenate([v, np.zeros((pad, *v.shape[1:]), v.dtype)]) for k, v in b.items()}
  out["index"][real:] = -1
  out["mask"] = np.concatenate([np.ones(real, np.float32), np.zeros(pad, np.float32)])
  return out


def pairs_iterator(
  cfg: Any, split: str, *, batch_size: int, process_index=None, process_count=None
):
  """Held-out (image, caption) pairs for image-text retrieval, finite, padded like eval batches.

  Each image takes its FIRST caption (deterministic). Yields {'image' float32 (b, S, S, 3) (centre
  view), 'tokens' int32 (b, L), 'caption_id' int64 (equal texts share an id; for TFDS text features
  the image's index), 'mask' float32, 'index' int64 (position in the split, -1 for padding)}.
  """
  process_index, process_count = _process_defaults(process_index, process_count)
  size, length = int(cfg.image_size), int(cfg.text.context_length)
  src = image_text._Source(cfg, split, process_index, process_count, cache=False)
  num_batches = math.ceil(max(src.total_counts) / batch_size) if max(src.total_counts) else 0
  if src.in_memory:
    ds = tf.data.Dataset.from_tensor_slices(
      (src.images, src.first, np.arange(src.n, dtype=np.int64))
    )
    group = tf.constant(src.group)
    table = tf.constant(src.table)

    def pair(image, first, i):
      return image, tf.gather(table, first), tf.gather(group, first), i
  else:
    ds = src.records().enumerate()
    table = tf.constant(src.table) if src.table is not None else None
    offset = src.offset

    def pair(i, record):
      image = src.decode(record[0])
      if src.source == "tfds":
        return image, image_text._tokens_of_strings(cfg, record[1], 0), i + offset, i
      first, _ = src.rows(record[1])
      return image, tf.gather(table, first), tf.cast(first, tf.int64), i

  def view(image, tokens, caption_id, i):
    x = augment.eval_view(_to_float_rgb(image), size)
    return {"image": x, "tokens": tokens, "caption_id": caption_id, "index": i}

  ds = ds.map(pair).map(view, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  ds = ds.batch(batch_size).prefetch(tf.data.AUTOTUNE).with_options(_options())
  shapes = {
    "image": ((size, size, 3), np.float32),
    "tokens": ((length,), np.int32),
    "caption_id": ((), np.int64),
  }
  return _padded(ds, src.offset, num_batches, batch_size, shapes)


def labelled_iterator(
  cfg: Any, dataset: str, split: str, *, batch_size: int, process_index=None, process_count=None
):
  """Labelled eval batches of `dataset` for zero-shot classification (as pipeline.eval_iterator).

  The synthetic compositional set is read here (label = shape); every other dataset through
  pipeline.eval_iterator on a copy of the config with config.dataset = `dataset`.
  """
  process_index, process_count = _process_defaults(process_index, process_count)
  if dataset != image_text.SYNTHETIC:
    sub = cfg.copy_and_resolve_references()
    with sub.unlocked():
      sub.dataset = dataset
    return pipeline.eval_iterator(
      sub, split, batch_size=batch_size, process_index=process_index, process_count=process_count
    )
  base, limit = image_text._limit(split)
  size = int(cfg.image_size)
  images, _, labels = captions.synthetic(base, _synthetic_sizes(cfg)[base], size)
  total = len(labels) if limit is None else min(limit, len(labels))
  bounds = [_shard_range(total, k, process_count) for k in range(process_count)]
  start, end = bounds[process_index]
  num_batches = math.ceil(max(e - s for s, e in bounds) / batch_size)
  ds = tf.data.Dataset.from_tensor_slices(
    (images[start:end], labels[start:end], np.arange(end - start, dtype=np.int64))
  )
  ds = ds.map(
    lambda im, lb, i: {
      "image": augment.eval_view(_to_float_rgb(im), size),
      "label": lb,
      "index": i,
    }
  )
  ds = ds.batch(batch_size).with_options(_options())
  shapes = {"image": ((size, size, 3), np.float32), "label": ((), np.int32)}
  return _padded(ds, start, num_batches, batch_size, shapes)
