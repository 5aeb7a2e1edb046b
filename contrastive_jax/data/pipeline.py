"""Input pipeline: TFDS (or a synthetic set) -> per-process shard -> two augmented views -> host batches.

Determinism and resumption. The pre-training stream of one process is epochs e = 0, 1, 2, ... of its
shard; epoch e is the shard in an order drawn from (seed, process_index, e), and the element at
stream position p gets augmentation seeds drawn from (seed, process_index, p). Resuming at
`start_step` starts at position p0 = start_step * batch_size: epoch p0 // n_local, skipping p0 %
n_local elements BEFORE decoding and augmenting, so the resumed stream equals the uninterrupted one
bit for bit (tests/test_pipeline.py checks this).

Two readers produce the same kind of stream:
- in memory (`cache`, the default for small fixed-size datasets such as CIFAR): the shard is decoded
  once into a uint8 array, and each epoch is a stateless random permutation of indices (no shuffle
  buffer, exact shuffle);
- streaming (large datasets): encoded TFDS records, `Dataset.shuffle(buffer, seed=f(e),
  reshuffle_each_iteration=False)` per epoch, decoding after the skip.

What a dataset is (names, data_dir, class counts, split sizes, the synthetic set, which reader a
config gets) lives in data/catalog.py, which this module imports; this one builds the streams.

This module imports TensorFlow and NumPy only; tensorflow_datasets is imported lazily (the
'synthetic' dataset needs no TFDS) and jax only for default process indices.
"""

import math
from typing import Any
from collections.abc import Iterator

import numpy as np
import tensorflow as tf

from contrastive_jax.data import augment, catalog, folder

_INF = 2**62


# --------------------------------------------------------------------------------------------------
# Reading one process's shard.


def _shard_range(n: int, process_index: int, process_count: int) -> tuple[int, int]:
  return n * process_index // process_count, n * (process_index + 1) // process_count


class _Shard:
  """One process's part of a split: either decoded arrays in memory or a TFDS reader of encoded records."""

  def __init__(
    self, cfg: Any, split: str, process_index: int, process_count: int, cache: bool | None
  ):
    if not 0 <= process_index < process_count:
      raise ValueError(
        f"process_index={process_index} must be in [0, process_count={process_count})."
      )
    self.images = self.labels = None
    self.builder = self.subsplit = None
    self.folder_paths = None
    if cfg.dataset == catalog.SYNTHETIC:
      total = catalog.num_examples(cfg, split)
      start, end = _shard_range(total, process_index, process_count)
      images, labels = catalog.synthetic_arrays(split.split("[")[0], total)
      self.images, self.labels = images[start:end], labels[start:end]
      self.offset, self.n = start, end - start
      return
    if folder.is_folder(cfg.dataset):
      # The config's cache, not the argument: eval splits of a small folder are decoded once
      # (folder.load is cached) and undecodable files are skipped as in training.
      if catalog._folder_in_memory(cfg, split, catalog._get(cfg, "cache", None)):
        images, labels = catalog._folder_arrays(cfg, split)
      else:  # a file list; decoding happens in the tf.data map (parallel)
        images, labels = folder.stream(
          cfg.dataset, split, catalog._get(cfg, "train_split", "train")
        )
        self.folder_size = catalog._folder_size(cfg)
      start, end = _shard_range(len(labels), process_index, process_count)
      self.labels = labels[start:end]
      if images.dtype == object:
        self.folder_paths = images[start:end].astype(str)
      else:
        self.images = images[start:end]
      self.offset, self.n = start, end - start
      return
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

    self.builder = catalog._builder(cfg.dataset, catalog._get(cfg, "data_dir"))
    subsplits = tfds.even_splits(split, process_count)
    sizes = [int(self.builder.info.splits[s].num_examples) for s in subsplits]
    self.subsplit = subsplits[process_index]
    self.offset, self.n = sum(sizes[:process_index]), sizes[process_index]
    shape = tuple(self.builder.info.features["image"].shape)
    if catalog._tfds_in_memory(self.n, shape, cache):
      self.images, self.labels = self._read_all()

  def _read_all(self) -> tuple[np.ndarray, np.ndarray]:
    ds = self.builder.as_dataset(split=self.subsplit, shuffle_files=False)
    ds = ds.map(
      lambda ex: (ex["image"], tf.cast(ex["label"], tf.int32)), num_parallel_calls=tf.data.AUTOTUNE
    )
    ds = ds.batch(4096).prefetch(2)
    images, labels = [], []
    for im, lb in ds.as_numpy_iterator():
      images.append(im)
      labels.append(lb)
    return np.concatenate(images), np.concatenate(labels)

  @property
  def in_memory(self) -> bool:
    return self.images is not None

  def encoded(self) -> tf.data.Dataset:
    """(encoded image bytes, label) records of the shard, in split order (streaming reader only);
    for a folder, (file path, label): the path is read in `decode`."""
    if self.folder_paths is not None:
      return tf.data.Dataset.from_tensor_slices((self.folder_paths, self.labels))
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

    ds = self.builder.as_dataset(
      split=self.subsplit, shuffle_files=False, decoders={"image": tfds.decode.SkipDecoding()}
    )
    return ds.map(lambda ex: (ex["image"], tf.cast(ex["label"], tf.int32)))

  def decode(self, encoded: tf.Tensor) -> tf.Tensor:
    if self.folder_paths is not None:
      return folder.decode(tf.io.read_file(encoded), self.folder_size)
    return self.builder.info.features["image"].decode_example(encoded)


def _to_float_rgb(image: tf.Tensor) -> tf.Tensor:
  """uint8 (H, W, 1 or 3) -> float32 (H, W, 3) in [0, 1]."""
  image = tf.image.convert_image_dtype(image, tf.float32)
  if image.shape[-1] == 1:
    image = tf.tile(image, [1, 1, 3])
  elif image.shape[-1] is None:
    image = tf.cond(tf.shape(image)[-1] == 1, lambda: tf.tile(image, [1, 1, 3]), lambda: image)
  return tf.ensure_shape(image, [None, None, 3])


def _options() -> tf.data.Options:
  options = tf.data.Options()
  options.deterministic = True
  options.autotune.enabled = True
  options.experimental_optimization.map_parallelization = True
  options.threading.max_intra_op_parallelism = 1
  return options


def _fold(seed: tf.Tensor, *data) -> tf.Tensor:
  for d in data:
    seed = tf.random.experimental.stateless_fold_in(seed, tf.cast(d, tf.int64))
  return seed


# Purpose names for the two streams of randomness drawn from the root seed.
_SHUFFLE, _AUGMENT = 1, 2


# --------------------------------------------------------------------------------------------------
# Pre-training.


def pretrain_dataset(
  cfg: Any,
  *,
  batch_size: int,
  process_index: int | None = None,
  process_count: int | None = None,
  start_step: int = 0,
  seed: int | None = None,
) -> tuple[tf.data.Dataset, int]:
  """The pre-training tf.data.Dataset of this process and its shard size (see `pretrain_iterator`)."""
  process_index, process_count = catalog._process_defaults(process_index, process_count)
  seed = int(catalog._get(cfg, "seed", 0) if seed is None else seed)
  aug = cfg.aug
  aug2 = catalog._get(cfg, "aug2", None) or aug
  for field, view in (("aug", aug), ("aug2", aug2)):
    size = catalog._get(view, "image_size", None)
    if size is None:
      raise ValueError(f"config.{field}.image_size is not set.")
    if catalog._get(cfg, "image_size", None) not in (None, size):
      # Eval batches use config.image_size; training at another size is almost surely a typo'd
      # override.
      raise ValueError(
        f"config.{field}.image_size={size} differs from config.image_size={cfg.image_size}; "
        f"set both (e.g. --config.image_size=S --config.{field}.image_size=S)."
      )
  shard = _Shard(
    cfg,
    catalog._get(cfg, "train_split", "train"),
    process_index,
    process_count,
    catalog._get(cfg, "cache", None),
  )
  n = shard.n
  if n < batch_size:
    raise ValueError(
      f"This process's shard of {cfg.dataset!r} has {n} examples, fewer than the per-process "
      f"batch_size {batch_size}; lower config.batch_size."
    )
  p0 = int(start_step) * int(batch_size)
  first_epoch, skip = divmod(p0, n)
  root = tf.constant([seed, 0], tf.int64)
  shuffle_root = _fold(root, _SHUFFLE, process_index)
  augment_root = _fold(root, _AUGMENT, process_index)
  positions = tf.data.Dataset.range(first_epoch * n, _INF)

  if shard.in_memory:
    images = tf.constant(shard.images)
    labels = tf.constant(shard.labels)

    def epoch(e):
      keys = tf.random.stateless_uniform([n], seed=_fold(shuffle_root, e), dtype=tf.float32)
      return tf.data.Dataset.from_tensor_slices(tf.argsort(keys, stable=True))

    order = tf.data.Dataset.range(first_epoch, _INF).flat_map(epoch)
    ds = tf.data.Dataset.zip(positions, order).skip(skip)

    def load(pos, idx):
      return pos, tf.gather(images, idx), tf.gather(labels, idx)
  else:
    encoded = shard.encoded()
    buffer = int(catalog._get(cfg, "shuffle_buffer", 10_000) or 10_000)

    def epoch(e):
      s = tf.random.stateless_uniform(
        [], seed=_fold(shuffle_root, e), minval=None, maxval=None, dtype=tf.int64
      )
      return encoded.shuffle(buffer, seed=s, reshuffle_each_iteration=False)

    records = tf.data.Dataset.range(first_epoch, _INF).flat_map(epoch)
    ds = tf.data.Dataset.zip(positions, records).skip(skip)

    def load(pos, record):
      return pos, shard.decode(record[0]), record[1]

  # Traced as written, not through autograph: the view code's data-dependent branches are explicit
  # tf.cond / tf.switch_case (its Python ifs read only the config), so the graph is the same, bit for
  # bit, and the ~1 s autograph spent rewriting the augmentation functions in every process is saved.
  @tf.autograph.experimental.do_not_convert
  def views(pos, image, label):
    image = _to_float_rgb(image)
    seeds = augment.views_seeds(_fold(augment_root, pos))
    return {
      "view1": augment.simclr_view(image, seeds[0], aug),
      "view2": augment.simclr_view(image, seeds[1], aug2),
      "label": tf.cast(label, tf.int32),
    }

  ds = ds.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)  # parallel decoding
  ds = ds.map(views, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  ds = ds.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)
  return ds.with_options(_options()), n


def pretrain_iterator(
  cfg: Any,
  *,
  batch_size: int,
  process_index: int | None = None,
  process_count: int | None = None,
  start_step: int = 0,
  seed: int | None = None,
) -> Iterator[dict[str, np.ndarray]]:
  """Endless iterator of this process's pre-training host batches.

  Args:
    cfg: ConfigDict with dataset, data_dir, train_split, shuffle_buffer, aug, optional aug2 (None:
      same as aug), cache (None: auto, in memory when the decoded shard is <= 2 GiB),
      synthetic_*_size, seed.
    batch_size: rows per PROCESS (global batch // process_count).
    process_index, process_count: this process and how many read disjoint shards (default: jax's).
    start_step: first step to produce; the stream equals the uninterrupted one from that step on.
    seed: root seed (default cfg.seed).

  Yields:
    dicts of numpy: view1, view2 float32 (b, S, S, 3) in [0, 1] (S = aug.image_size), label int32 (b,).
  """
  ds, _ = pretrain_dataset(
    cfg,
    batch_size=batch_size,
    process_index=process_index,
    process_count=process_count,
    start_step=start_step,
    seed=seed,
  )
  return ds.as_numpy_iterator()


# --------------------------------------------------------------------------------------------------
# Evaluation.


def eval_iterator(
  cfg: Any,
  split: str,
  *,
  batch_size: int,
  process_index: int | None = None,
  process_count: int | None = None,
) -> Iterator[dict[str, np.ndarray]]:
  """Finite iterator over this process's shard of `split`, padded so every process yields the same batches.

  Args:
    cfg: ConfigDict with dataset, data_dir, image_size (or aug.image_size), synthetic_*_size.
    split: TFDS split, e.g. 'test' or 'train[:10%]'.
    batch_size: rows per process.
    process_index, process_count: as in `pretrain_iterator`.

  Yields:
    dicts of numpy: image float32 (b, S, S, 3) in [0, 1] (resize + centre crop, no randomness); label int32;
    mask float32 (1 real row, 0 padding; padding rows are zero images with label 0); index int64 (position in
    the split, -1 for padding). Over all processes the real rows cover the split exactly once.
  """
  process_index, process_count = catalog._process_defaults(process_index, process_count)
  image_size = catalog._get(cfg, "image_size", None) or catalog._get(
    catalog._get(cfg, "aug", {}), "image_size", None
  )
  if image_size is None:
    raise ValueError("config.image_size is not set.")
  image_size = int(image_size)
  total = catalog.num_examples(cfg, split)
  counts = [e - s for s, e in (_shard_range(total, k, process_count) for k in range(process_count))]
  if cfg.dataset != catalog.SYNTHETIC and not folder.is_folder(cfg.dataset):
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

    builder = catalog._builder(cfg.dataset, catalog._get(cfg, "data_dir"))
    counts = [
      int(builder.info.splits[s].num_examples) for s in tfds.even_splits(split, process_count)
    ]
  num_batches = math.ceil(max(counts) / batch_size) if max(counts) else 0
  shard = _Shard(cfg, split, process_index, process_count, cache=False)

  if shard.in_memory:
    ds = tf.data.Dataset.from_tensor_slices((shard.images, shard.labels))
  elif shard.folder_paths is not None:
    ds = shard.encoded().map(
      lambda path, lb: (shard.decode(path), lb), num_parallel_calls=tf.data.AUTOTUNE
    )
  else:
    ds = shard.builder.as_dataset(split=shard.subsplit, shuffle_files=False)
    ds = ds.map(lambda ex: (ex["image"], ex["label"]))
  ds = ds.map(
    lambda im, lb: (augment.eval_view(_to_float_rgb(im), image_size), tf.cast(lb, tf.int32)),
    num_parallel_calls=tf.data.AUTOTUNE,
    deterministic=True,
  )
  ds = ds.batch(batch_size).prefetch(tf.data.AUTOTUNE).with_options(_options())

  def generate():
    offset = shard.offset
    produced = 0
    for images, labels in ds.as_numpy_iterator():
      yield _pad_batch(
        images, labels, np.arange(offset, offset + len(labels)), batch_size, image_size
      )
      offset += len(labels)
      produced += 1
    for _ in range(num_batches - produced):
      yield _pad_batch(
        np.zeros((0, image_size, image_size, 3), np.float32),
        np.zeros((0,), np.int32),
        np.zeros((0,), np.int64),
        batch_size,
        image_size,
      )

  return generate()


def _pad_batch(
  images: np.ndarray, labels: np.ndarray, index: np.ndarray, batch_size: int, image_size: int
) -> dict[str, np.ndarray]:
  real = len(labels)
  pad = batch_size - real
  mask = np.concatenate([np.ones(real, np.float32), np.zeros(pad, np.float32)])
  if pad:
    images = np.concatenate([images, np.zeros((pad, image_size, image_size, 3), np.float32)])
    labels = np.concatenate([labels, np.zeros(pad, np.int32)])
    index = np.concatenate([index, -np.ones(pad, np.int64)])
  return {
    "image": images.astype(np.float32),
    "label": labels.astype(np.int32),
    "mask": mask,
    "index": index.astype(np.int64),
  }


__all__: list[str] = ["pretrain_dataset", "pretrain_iterator", "eval_iterator"]
