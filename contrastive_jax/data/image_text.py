"""Image-text input pipeline: (image, caption tokens) batches for CLIP and SigLIP, through tf.data.

The caption source is `config.text.source`:
  'templates'  a labelled dataset (config.dataset: a TFDS name, 'synthetic' or 'folder:/root') whose
               captions are CLIP's prompt templates (config.text.templates) over its class names;
  'tfds'       a TFDS dataset with an image and a text feature (config.text.image_feature,
               config.text.text_feature, e.g. 'image' and 'captions/text' for coco_captions); a
               sequence of captions per image gives one drawn per step;
  'folder'     config.dataset is a directory of images with a caption file beside each
               (data/captions.py);
  'synthetic'  config.dataset = 'synthetic_captions': the compositional set of data/captions.py.
An empty source means image-only batches (data/pipeline.py); data/source.py chooses by this field.

Determinism and resumption are those of data/pipeline.py, whose machinery this reuses: epoch e of a
process's shard is a permutation (in memory) or a seeded shuffle buffer (streaming) drawn from
(seed, process, e); the element at stream position p gets its crop seeds AND its caption choice from
(seed, process, p); resuming at step s skips s * batch elements before anything is decoded, so the
resumed stream equals the uninterrupted one bit for bit.

Captions are tokenized once into a table when they are known up front (templates, folder,
synthetic): a training element carries (first, count), its row range in the table, and draws one
row. TFDS text features are tokenized per element (tf.numpy_function on the CLIP tokenizer).
"""

import re
from typing import Any

import numpy as np
import tensorflow as tf

from contrastive_jax.data import augment, captions, catalog, folder
from contrastive_jax.data import tokenizer as tokenizer_lib

# The image pipeline's catalog and machinery, shared so both streams find, size, shuffle, seed and
# resume alike.
from contrastive_jax.data.catalog import _builder, _process_defaults, _synthetic_sizes
from contrastive_jax.data.pipeline import (
  _AUGMENT,
  _INF,
  _SHUFFLE,
  _Shard,
  _fold,
  _options,
  _shard_range,
  _to_float_rgb,
)

SOURCES = ("templates", "tfds", "folder", "synthetic")
SYNTHETIC = "synthetic_captions"
_get = catalog._get


def enabled(cfg: Any) -> bool:
  """Whether this config trains on image-text batches (config.text.source is set)."""
  text = _get(cfg, "text", None)
  return bool(text is not None and _get(text, "source", ""))


def check(cfg: Any) -> str:
  source = cfg.text.source
  if source not in SOURCES:
    raise ValueError(f"config.text.source={source!r}: expected one of {SOURCES} (or '' for none).")
  if (source == "synthetic") != (cfg.dataset == SYNTHETIC):
    raise ValueError(
      f"config.text.source={source!r} with config.dataset={cfg.dataset!r}: the synthetic "
      f"compositional set is config.dataset='{SYNTHETIC}' with config.text.source='synthetic'."
    )
  if source == "folder" and folder.is_folder(cfg.dataset):
    raise ValueError(
      f"config.dataset={cfg.dataset!r} with config.text.source='folder': give the plain directory "
      f"of images and caption files; 'folder:' names a class-per-directory dataset, which takes "
      f"config.text.source='templates'."
    )
  return source


def _limit(split: str) -> tuple[str, int | None]:
  """'test[:500]' -> ('test', 500) for the in-memory sources (TFDS splits slice natively)."""
  m = re.fullmatch(r"(\w+)(?:\[:(\d+)\])?", split)
  if not m:
    raise ValueError(f"Split {split!r}: this dataset takes 'name' or 'name[:N]'.")
  return m.group(1), (int(m.group(2)) if m.group(2) else None)


def _feature(tree, path: str):
  for key in path.split("/"):
    tree = tree[key]
  return tree


def _tokenize(cfg: Any, texts) -> np.ndarray:
  tok = tokenizer_lib.get_tokenizer(cfg.text.tokenizer)
  return tok(list(texts), int(cfg.text.context_length))


def labelled_class_names(cfg: Any, dataset: str) -> list[str]:
  """Class names of a labelled dataset: CLIP's for CIFAR-10/ImageNet, else TFDS/folder names."""
  if dataset == SYNTHETIC:
    return list(captions.SHAPES)
  if dataset == catalog.SYNTHETIC:
    return list(captions.PIPELINE_SYNTHETIC_NAMES)
  if folder.is_folder(dataset):
    return [n.replace("_", " ") for n in folder.classes(dataset, _get(cfg, "train_split", "train"))]
  try:
    return captions.class_names(dataset)
  except ValueError:
    builder = _builder(dataset, _get(cfg, "data_dir"))
    return captions.class_names(dataset, builder.info.features["label"].names)


class _Source:
  """One process's part of a split, with its captions.

  In memory: `images` uint8 (n, H, W, 3), `first`/`count` (n,) rows of `table` (U, L), `labels`.
  Streaming: `records()` -> (encoded image, payload) in split order, `decode(encoded)`; payload is
  a label (templates, rows label * T ...) or a vector of caption strings (tfds).
  `group` (U,) maps a table row to the id of its text (equal texts share an id).
  """

  def __init__(self, cfg, split, process_index, process_count, cache):
    self.cfg, self.source = cfg, check(cfg)
    self.images = self.table = self.group = self.builder = None
    self.templates = 0
    if self.source == "templates":
      self._templates(split, process_index, process_count, cache)
    elif self.source == "tfds":
      self._tfds(split, process_index, process_count)
    else:
      base, limit = _limit(split)
      if self.source == "synthetic":
        n = _synthetic_sizes(cfg)[base]
        images, attrs, labels = captions.synthetic(base, n, int(cfg.image_size))
        texts = captions.synthetic_captions()
        ids = captions.synthetic_caption_ids(attrs)
        first, count = ids[:, 0], np.full(len(ids), ids.shape[1], np.int32)
      else:
        images, caps = captions.load_folder(cfg.dataset, base, int(cfg.image_size))
        count = np.asarray([len(c) for c in caps], np.int32)
        first = np.concatenate([[0], np.cumsum(count)[:-1]]).astype(np.int32)
        texts = [t for c in caps for t in c]
        labels = np.full(len(caps), -1, np.int32)
      total = len(images) if limit is None else min(limit, len(images))
      self.total_counts = [
        e - s for s, e in (_shard_range(total, k, process_count) for k in range(process_count))
      ]
      start, end = _shard_range(total, process_index, process_count)
      self.images, self.labels = images[start:end], labels[start:end]
      self.first, self.count = first[start:end], count[start:end]
      self.offset, self.n = start, end - start
      self.table = _tokenize(cfg, texts)
      self.group = np.unique(np.asarray(texts, dtype=object), return_inverse=True)[1].astype(
        np.int64
      )

  def _templates(self, split, process_index, process_count, cache):
    cfg = self.cfg
    shard = _Shard(cfg, split, process_index, process_count, cache)
    self.shard = shard
    names = labelled_class_names(cfg, cfg.dataset)
    temps = captions.templates(cfg.text.templates)
    self.templates = len(temps)
    self.table = _tokenize(cfg, captions.fill(temps, names))
    self.group = np.arange(len(self.table), dtype=np.int64)
    self.offset, self.n = shard.offset, shard.n
    self.total_counts = _counts(cfg, split, process_count, self.n)
    if shard.in_memory:
      self.images, self.labels = shard.images, shard.labels
      self.first = (shard.labels * self.templates).astype(np.int32)
      self.count = np.full(self.n, self.templates, np.int32)
    else:
      self.builder = shard.builder

  def _tfds(self, split, process_index, process_count):
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

    cfg = self.cfg
    self.builder = _builder(cfg.dataset, _get(cfg, "data_dir"))
    features = self.builder.info.features
    for field in ("image_feature", "text_feature"):
      try:
        _feature(features, cfg.text[field])
      except KeyError:
        raise ValueError(
          f"config.text.{field}={cfg.text[field]!r} is not a feature of {cfg.dataset!r}; its "
          f"features are {features}."
        ) from None
    subsplits = tfds.even_splits(split, process_count)
    sizes = [int(self.builder.info.splits[s].num_examples) for s in subsplits]
    self.subsplit, self.total_counts = subsplits[process_index], sizes
    self.offset, self.n = sum(sizes[:process_index]), sizes[process_index]

  @property
  def in_memory(self) -> bool:
    return self.images is not None

  def records(self) -> tf.data.Dataset:
    if self.source == "templates":
      return self.shard.encoded()
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

    img, txt = self.cfg.text.image_feature, self.cfg.text.text_feature
    decoders = {img: tfds.decode.SkipDecoding()} if "/" not in img else None
    ds = self.builder.as_dataset(split=self.subsplit, shuffle_files=False, decoders=decoders)
    return ds.map(lambda ex: (_feature(ex, img), tf.reshape(_feature(ex, txt), [-1])))

  def decode(self, encoded: tf.Tensor) -> tf.Tensor:
    if self.source == "templates":
      return self.shard.decode(encoded)
    image = _feature(self.builder.info.features, self.cfg.text.image_feature)
    return image.decode_example(encoded) if encoded.dtype == tf.string else encoded

  def rows(self, payload):
    """(first, count) table rows of a streaming templated element."""
    label = tf.cast(payload, tf.int32)
    return label * self.templates, tf.constant(self.templates, tf.int32)


def _counts(cfg, split, process_count, n) -> list[int]:
  """Every process's shard size of a TFDS/synthetic/folder split (equal padding in eval)."""
  if cfg.dataset == catalog.SYNTHETIC or folder.is_folder(cfg.dataset):
    total = catalog.num_examples(cfg, split)
    return [e - s for s, e in (_shard_range(total, k, process_count) for k in range(process_count))]
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

  builder = _builder(cfg.dataset, _get(cfg, "data_dir"))
  return [int(builder.info.splits[s].num_examples) for s in tfds.even_splits(split, process_count)]


def zero_shot_dataset(cfg: Any) -> str:
  """The labelled dataset of zero-shot classification: config.zero_shot.dataset, else the training
  data's own labels ('templates' and 'synthetic' sources), else '' (none)."""
  chosen = cfg.zero_shot.get("dataset")
  if chosen is not None:
    return chosen
  if cfg.text.source == "templates":
    return cfg.dataset
  return SYNTHETIC if cfg.text.source == "synthetic" else ""


def info(cfg: Any) -> tuple[int, int]:
  """(num_classes (0 without labels), train examples) of the training source.

  Also resolves the zero-shot dataset's class names now, so that a missing or unprepared
  config.zero_shot.dataset fails before training rather than at the first evaluation.
  """
  source = check(cfg)
  src = _Source(cfg, cfg.train_split, 0, 1, cache=False)
  num_classes = 0
  if source == "templates":
    num_classes = len(labelled_class_names(cfg, cfg.dataset))
  elif source == "synthetic":
    num_classes = len(captions.SHAPES)
  dataset = zero_shot_dataset(cfg)
  if dataset:
    try:
      labelled_class_names(cfg, dataset)
    except ValueError as e:
      raise ValueError(
        f"config.zero_shot.dataset={dataset!r} cannot be read: {e} To train without zero-shot "
        f"classification, pass --config.zero_shot.dataset=''."
      ) from None
  return num_classes, src.n


def stream_fingerprint(cfg: Any, train_size: int, num_classes: int) -> dict:
  """What a resumed image-text run must share with its checkpoint's stream (see fingerprint.py)."""
  source = check(cfg)
  tfds_data = source == "tfds" or (
    source == "templates" and cfg.dataset != catalog.SYNTHETIC and not folder.is_folder(cfg.dataset)
  )
  if source == "templates":
    reader = catalog.reader(cfg)
  else:
    reader = "streaming" if source == "tfds" else "memory"
  return {
    "dataset": folder.PREFIX if folder.is_folder(cfg.dataset) else cfg.dataset,
    "tfds_version": catalog.version(cfg) if tfds_data else None,
    "text": cfg.text.to_dict(),
    "train_split": cfg.train_split,
    "train_examples": int(train_size),
    "num_classes": int(num_classes),
    "image_size": cfg.image_size,
    "reader": reader,
    "shuffle_buffer": cfg.shuffle_buffer if reader == "streaming" else None,
    "aug": cfg.aug.to_dict(),
  }


def _tokens_of_strings(cfg, strings, index):
  tok = tokenizer_lib.get_tokenizer(cfg.text.tokenizer)
  length = int(cfg.text.context_length)

  def run(text):
    return tok([text.decode("utf-8")], length)[0]

  text = strings[tf.cast(index, tf.int32)]
  out = tf.numpy_function(run, [text], tf.int32, stateful=False)
  return tf.ensure_shape(out, [length])


def _pick(src, cfg, table, payload, u):
  """One caption's tokens of an element: row first + floor(u * count) of the table, or a string."""
  if src.source == "tfds":
    m = tf.shape(payload)[0]
    k = tf.minimum(tf.cast(u * tf.cast(m, tf.float32), tf.int32), m - 1)
    return _tokens_of_strings(cfg, payload, k)
  first, count = payload if isinstance(payload, tuple) else src.rows(payload)
  k = first + tf.minimum(tf.cast(u * tf.cast(count, tf.float32), tf.int32), count - 1)
  return tf.gather(table, k)


# ----------------------------------------------------------------------------- pre-training


def pretrain_dataset(
  cfg: Any,
  *,
  batch_size: int,
  process_index: int | None = None,
  process_count: int | None = None,
  start_step: int = 0,
  seed: int | None = None,
) -> tuple[tf.data.Dataset, int]:
  """This process's endless image-text training stream and its shard size.

  Yields batches {'image': float32 (b, S, S, 3) in [0, 1] (config.aug's view), 'tokens': int32
  (b, config.text.context_length)}; see the module docstring for determinism.
  """
  process_index, process_count = _process_defaults(process_index, process_count)
  seed = int(_get(cfg, "seed", 0) if seed is None else seed)
  size = _get(cfg.aug, "image_size", None)
  if size != cfg.image_size:
    raise ValueError(
      f"config.aug.image_size={size} differs from config.image_size={cfg.image_size}; set both."
    )
  src = _Source(cfg, cfg.train_split, process_index, process_count, _get(cfg, "cache", None))
  n = src.n
  if n < batch_size:
    raise ValueError(
      f"This process's shard of {cfg.dataset!r} has {n} image-text pairs, fewer than the "
      f"per-process batch {batch_size}; lower config.batch_size."
    )
  first_epoch, skip = divmod(int(start_step) * int(batch_size), n)
  root = tf.constant([seed, 0], tf.int64)
  shuffle_root = _fold(root, _SHUFFLE, process_index)
  augment_root = _fold(root, _AUGMENT, process_index)
  positions = tf.data.Dataset.range(first_epoch * n, _INF)
  table = tf.constant(src.table) if src.table is not None else None

  if src.in_memory:
    images, first, count = (tf.constant(a) for a in (src.images, src.first, src.count))

    def epoch(e):
      keys = tf.random.stateless_uniform([n], seed=_fold(shuffle_root, e), dtype=tf.float32)
      return tf.data.Dataset.from_tensor_slices(tf.argsort(keys, stable=True))

    order = tf.data.Dataset.range(first_epoch, _INF).flat_map(epoch)
    ds = tf.data.Dataset.zip(positions, order).skip(skip)

    def load(pos, idx):
      return pos, tf.gather(images, idx), (tf.gather(first, idx), tf.gather(count, idx))
  else:
    encoded = src.records()
    buffer = int(_get(cfg, "shuffle_buffer", 10_000) or 10_000)

    def epoch(e):
      s = tf.random.stateless_uniform(
        [], seed=_fold(shuffle_root, e), minval=None, maxval=None, dtype=tf.int64
      )
      return encoded.shuffle(buffer, seed=s, reshuffle_each_iteration=False)

    records = tf.data.Dataset.range(first_epoch, _INF).flat_map(epoch)
    ds = tf.data.Dataset.zip(positions, records).skip(skip)

    def load(pos, record):
      return pos, src.decode(record[0]), record[1]

  def pair(pos, image, payload):
    crop_seed, caption_seed = tf.unstack(
      tf.random.experimental.stateless_split(_fold(augment_root, pos), 2)
    )
    u = tf.random.stateless_uniform([], seed=caption_seed)
    view = augment.simclr_view(_to_float_rgb(image), crop_seed, cfg.aug)
    return {"image": view, "tokens": _pick(src, cfg, table, payload, u)}

  ds = ds.map(load).map(pair, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  ds = ds.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)
  return ds.with_options(_options()), n


def pretrain_iterator(cfg: Any, **kwargs):
  """Endless iterator of host batches (numpy); arguments as `pretrain_dataset`."""
  return pretrain_dataset(cfg, **kwargs)[0].as_numpy_iterator()
