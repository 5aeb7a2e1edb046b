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

This module imports TensorFlow and NumPy only; tensorflow_datasets is imported lazily (the
'synthetic' dataset needs no TFDS) and jax only for default process indices.
"""

import math
import os
import pathlib
from typing import Any
from collections.abc import Iterator

import numpy as np
import tensorflow as tf

from contrastive_jax.data import augment, folder

SYNTHETIC = "synthetic"
_SYNTHETIC_NUM_CLASSES = 10
_SYNTHETIC_SIZE = 32
_CACHE_LIMIT_BYTES = 2 << 30  # Decoded shards up to 2 GiB are kept in memory when cache is unset.
_INF = 2**62


def _get(cfg: Any, name: str, default: Any = None) -> Any:
  return augment._get(cfg, name, default)  # pylint: disable=protected-access


# --------------------------------------------------------------------------------------------------
# Where the data is and what it looks like.


def resolve_data_dir(data_dir: str | None = None) -> str | None:
  """The TFDS data_dir: `data_dir` if given, else $TFDS_DATA_DIR, else ../shared/tensorflow_datasets next to the
  repository (if it exists), else None (TFDS default, ~/tensorflow_datasets)."""
  if data_dir:
    return os.fspath(data_dir)
  env = os.environ.get("TFDS_DATA_DIR")
  if env:
    return env
  shared = pathlib.Path(__file__).resolve().parents[2].parent / "shared" / "tensorflow_datasets"
  if shared.is_dir():
    return os.fspath(shared)
  return None


def _builder(name: str, data_dir: str | None):
  """A prepared TFDS builder, or a ValueError that says how to fix it. Never downloads."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

  data_dir = resolve_data_dir(data_dir)
  searched = data_dir or "~/tensorflow_datasets (TFDS default)"
  try:
    builder = tfds.builder(name, data_dir=data_dir, try_gcs=False)
  except tfds.core.registered.DatasetNotFoundError as e:
    raise ValueError(
      f"Unknown dataset {name!r} (config.dataset): TFDS has no dataset by that name. Use a TFDS image dataset "
      f"name with 'image' and 'label' features (e.g. 'cifar10', 'cifar100', 'stl10', 'imagenet2012') or "
      f"'synthetic'. TFDS said: {str(e).splitlines()[0]}"
    ) from None
  if not builder.is_prepared():
    raise ValueError(
      f"Dataset {name!r} is not prepared in data_dir {searched!r} (no download is attempted). Fix: set "
      f"config.data_dir (--config.data_dir=/path) or $TFDS_DATA_DIR to a directory that holds it, or prepare "
      f"it with `tfds build {name} --data_dir=DIR` on a machine with internet and copy DIR here."
    )
  return builder


def _synthetic_sizes(cfg: Any = None) -> dict[str, int]:
  return {
    "train": int(_get(cfg, "synthetic_train_size", 1024) or 1024),
    "test": int(_get(cfg, "synthetic_test_size", 256) or 256),
  }


def dataset_info(
  name: str, data_dir: str | None = None, config: Any = None
) -> tuple[int, tuple[int, ...], dict[str, int]]:
  """(num_classes, image_shape, {split: num_examples}) of a dataset, without reading its records.

  image_shape may contain None for datasets of variable image size. Raises ValueError for unknown or
  unprepared datasets (see `_builder`). `config` supplies synthetic_*_size for the synthetic
  dataset.
  """
  if name == SYNTHETIC:
    return (_SYNTHETIC_NUM_CLASSES, (_SYNTHETIC_SIZE, _SYNTHETIC_SIZE, 3), _synthetic_sizes(config))
  if folder.is_folder(
    name
  ):  # 'folder:/root': decoded images of a user's class-per-directory folder
    return (
      len(folder.classes(name, _get(config, "train_split", "train"))),
      (None, None, 3),
      {
        s: num_examples(config, s)
        for s in {_get(config, "train_split", "train"), _get(config, "eval_split", "test")}
      },
    )
  builder = _builder(name, data_dir)
  features = builder.info.features
  if "image" not in features or "label" not in features:
    raise ValueError(
      f"Dataset {name!r} needs 'image' and 'label' features; it has {list(features.keys())}."
    )
  splits = {k: int(v.num_examples) for k, v in builder.info.splits.items()}
  return int(features["label"].num_classes), tuple(features["image"].shape), splits


def num_examples(cfg: Any, split: str) -> int:
  """Number of examples in `split` (TFDS split syntax such as 'train[:90%]' works) of cfg.dataset."""
  if cfg.dataset == SYNTHETIC:
    base = split.split("[")[0]
    sizes = _synthetic_sizes(cfg)
    if base not in sizes or "[" in split:
      raise ValueError(
        f"Synthetic dataset splits are {sorted(sizes)} (no slicing); got split={split!r}."
      )
    return sizes[base]
  if folder.is_folder(cfg.dataset):
    if _folder_in_memory(cfg, split, _get(cfg, "cache", None)):
      return len(_folder_arrays(cfg, split)[1])
    return len(folder.list_files(cfg.dataset, split, _get(cfg, "train_split", "train"))[0])
  return int(_builder(cfg.dataset, _get(cfg, "data_dir")).info.splits[split].num_examples)


# --------------------------------------------------------------------------------------------------
# The synthetic dataset: 10 classes of 32x32 images, each class a coloured striped disc of its own
# hue and stripe orientation/frequency at a random place and radius, over noise. Learnable, yet
# needs augmentation-invariance.

_PALETTE = np.array(
  [
    [0.9, 0.1, 0.1],
    [0.1, 0.8, 0.1],
    [0.1, 0.2, 0.9],
    [0.9, 0.9, 0.1],
    [0.9, 0.1, 0.9],
    [0.1, 0.9, 0.9],
    [1.0, 0.5, 0.0],
    [0.5, 0.0, 1.0],
    [0.6, 0.6, 0.6],
    [0.4, 0.25, 0.1],
  ],
  np.float32,
)


def synthetic_arrays(split: str, n: int) -> tuple[np.ndarray, np.ndarray]:
  """Deterministic synthetic split: uint8 images (n, 32, 32, 3) and int32 labels (n,)."""
  rng = np.random.default_rng({"train": 0, "test": 1}.get(split, 2))
  size = _SYNTHETIC_SIZE
  labels = (np.arange(n) % _SYNTHETIC_NUM_CLASSES).astype(np.int32)
  rng.shuffle(labels)
  yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
  angle = (labels * np.pi / _SYNTHETIC_NUM_CLASSES)[:, None, None]
  freq = (2.0 + labels % 3)[:, None, None]
  stripes = 0.5 + 0.5 * np.sin(2 * np.pi * freq * (xx * np.cos(angle) + yy * np.sin(angle)) / size)
  cx, cy = rng.uniform(10, 22, (2, n, 1, 1)).astype(np.float32)
  radius = rng.uniform(7, 13, (n, 1, 1)).astype(np.float32)
  disc = ((xx - cx) ** 2 + (yy - cy) ** 2 < radius**2).astype(np.float32)
  colour = _PALETTE[labels][:, None, None, :]
  background = rng.uniform(0.0, 0.35, (n, size, size, 3)).astype(np.float32)
  fg = (0.3 + 0.7 * stripes)[..., None] * colour
  img = background * (1 - disc[..., None]) + disc[..., None] * fg
  img = np.clip(img + rng.normal(0, 0.04, img.shape).astype(np.float32), 0, 1)
  return (img * 255).round().astype(np.uint8), labels


def _folder_size(cfg: Any) -> int:
  return int(_get(cfg, "image_size", None) or _get(_get(cfg, "aug", {}), "image_size", 32))


def _folder_arrays(cfg: Any, split: str) -> tuple[np.ndarray, np.ndarray]:
  train_split = _get(cfg, "train_split", "train")
  images, labels, _ = folder.load(cfg.dataset, split, _folder_size(cfg), train_split)
  return images, labels


def _folder_in_memory(cfg: Any, split: str, cache: bool | None) -> bool:
  """Folders are decoded into memory unless cache=False or the decoded split exceeds the limit."""
  if cache is False:
    return False
  paths = folder.list_files(cfg.dataset, split, _get(cfg, "train_split", "train"))[0]
  return len(paths) * _folder_size(cfg) ** 2 * 3 <= _CACHE_LIMIT_BYTES


def reader(cfg: Any, split: str | None = None) -> str:
  """'memory' or 'streaming': which reader pretrain_dataset uses for `split` (default train)."""
  split = split or _get(cfg, "train_split", "train")
  cache = _get(cfg, "cache", None)
  if cfg.dataset == SYNTHETIC:
    return "memory"
  if folder.is_folder(cfg.dataset):
    return "memory" if _folder_in_memory(cfg, split, cache) else "streaming"
  builder = _builder(cfg.dataset, _get(cfg, "data_dir"))
  shape = tuple(builder.info.features["image"].shape)
  if None in shape:
    return "streaming"  # as _Shard: variable-size images cannot be stacked
  if cache is None:  # as _Shard: this process's shard decoded fits the limit
    n = int(builder.info.splits[split].num_examples) // _process_defaults(None, None)[1]
    return "memory" if n * int(np.prod(shape)) <= _CACHE_LIMIT_BYTES else "streaming"
  return "memory" if cache else "streaming"


def version(cfg: Any) -> str | None:
  """The TFDS version of cfg.dataset (None for synthetic and folder datasets)."""
  if cfg.dataset == SYNTHETIC or folder.is_folder(cfg.dataset):
    return None
  return str(_builder(cfg.dataset, _get(cfg, "data_dir")).info.version)


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
    if cfg.dataset == SYNTHETIC:
      total = num_examples(cfg, split)
      start, end = _shard_range(total, process_index, process_count)
      images, labels = synthetic_arrays(split.split("[")[0], total)
      self.images, self.labels = images[start:end], labels[start:end]
      self.offset, self.n = start, end - start
      return
    if folder.is_folder(cfg.dataset):
      # The config's cache, not the argument: eval splits of a small folder are decoded once
      # (folder.load is cached) and undecodable files are skipped as in training.
      if _folder_in_memory(cfg, split, _get(cfg, "cache", None)):
        images, labels = _folder_arrays(cfg, split)
      else:  # a file list; decoding happens in the tf.data map (parallel)
        images, labels = folder.stream(cfg.dataset, split, _get(cfg, "train_split", "train"))
        self.folder_size = _folder_size(cfg)
      start, end = _shard_range(len(labels), process_index, process_count)
      self.labels = labels[start:end]
      if images.dtype == object:
        self.folder_paths = images[start:end].astype(str)
      else:
        self.images = images[start:end]
      self.offset, self.n = start, end - start
      return
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

    self.builder = _builder(cfg.dataset, _get(cfg, "data_dir"))
    subsplits = tfds.even_splits(split, process_count)
    sizes = [int(self.builder.info.splits[s].num_examples) for s in subsplits]
    self.subsplit = subsplits[process_index]
    self.offset, self.n = sum(sizes[:process_index]), sizes[process_index]
    shape = tuple(self.builder.info.features["image"].shape)
    nbytes = self.n * int(np.prod(shape)) if None not in shape else None
    if cache is None:
      cache = nbytes is not None and nbytes <= _CACHE_LIMIT_BYTES
    if cache and nbytes is None:
      cache = False  # Variable-size images cannot be stacked; stream them instead.
    if cache:
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


def _process_defaults(process_index: int | None, process_count: int | None) -> tuple[int, int]:
  if process_index is None or process_count is None:
    import jax  # pylint: disable=g-import-not-at-top

    process_index = jax.process_index() if process_index is None else process_index
    process_count = jax.process_count() if process_count is None else process_count
  return int(process_index), int(process_count)


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
  process_index, process_count = _process_defaults(process_index, process_count)
  seed = int(_get(cfg, "seed", 0) if seed is None else seed)
  aug = cfg.aug
  aug2 = _get(cfg, "aug2", None) or aug
  for field, view in (("aug", aug), ("aug2", aug2)):
    size = _get(view, "image_size", None)
    if size is None:
      raise ValueError(f"config.{field}.image_size is not set.")
    if _get(cfg, "image_size", None) not in (None, size):
      # Eval batches use config.image_size; training at another size is almost surely a typo'd
      # override.
      raise ValueError(
        f"config.{field}.image_size={size} differs from config.image_size={cfg.image_size}; "
        f"set both (e.g. --config.image_size=S --config.{field}.image_size=S)."
      )
  shard = _Shard(
    cfg, _get(cfg, "train_split", "train"), process_index, process_count, _get(cfg, "cache", None)
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
    buffer = int(_get(cfg, "shuffle_buffer", 10_000) or 10_000)

    def epoch(e):
      s = tf.random.stateless_uniform(
        [], seed=_fold(shuffle_root, e), minval=None, maxval=None, dtype=tf.int64
      )
      return encoded.shuffle(buffer, seed=s, reshuffle_each_iteration=False)

    records = tf.data.Dataset.range(first_epoch, _INF).flat_map(epoch)
    ds = tf.data.Dataset.zip(positions, records).skip(skip)

    def load(pos, record):
      return pos, shard.decode(record[0]), record[1]

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
  process_index, process_count = _process_defaults(process_index, process_count)
  image_size = _get(cfg, "image_size", None) or _get(_get(cfg, "aug", {}), "image_size", None)
  if image_size is None:
    raise ValueError("config.image_size is not set.")
  image_size = int(image_size)
  total = num_examples(cfg, split)
  counts = [e - s for s, e in (_shard_range(total, k, process_count) for k in range(process_count))]
  if cfg.dataset != SYNTHETIC and not folder.is_folder(cfg.dataset):
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

    builder = _builder(cfg.dataset, _get(cfg, "data_dir"))
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


__all__: list[str] = [
  "resolve_data_dir",
  "dataset_info",
  "num_examples",
  "synthetic_arrays",
  "pretrain_dataset",
  "pretrain_iterator",
  "eval_iterator",
  "SYNTHETIC",
]
