"""Data for evaluation runs: the evaluation's data fields, whole splits in memory, eval-view images,
and endless augmented (crop + flip) batches for fine-tuning and the augmented linear probe.

Everything here is tf.data / NumPy on the host; the protocols in contrastive_jax/protocols/ put the
batches on the mesh.
"""

from collections.abc import Iterator

import jax
import ml_collections
import numpy as np
import tensorflow as tf

from contrastive_jax.data import augment, catalog, pipeline


def data_config(config, pretrain_cfg) -> ml_collections.ConfigDict:
  """The data fields of an evaluation: the pre-training config's, with the evaluation's overrides."""
  d = ml_collections.ConfigDict(pretrain_cfg.to_dict())
  for field in ("dataset", "data_dir", "train_split", "eval_split"):
    value = config.get(field, None)
    if value is not None:
      d[field] = value
  if d.get("data_dir", None) is None:
    d.data_dir = None
  return d


def class_names(data_cfg) -> list[str] | None:
  """Label names from TFDS (None for the synthetic set or when unavailable)."""
  if data_cfg.dataset == catalog.SYNTHETIC:
    return None
  try:
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

    b = tfds.builder(
      data_cfg.dataset, data_dir=catalog.resolve_data_dir(data_cfg.get("data_dir")), try_gcs=False
    )
    return list(b.info.features["label"].names)
  except Exception:  # pylint: disable=broad-except
    return None


def per_process_batch(batch_size: int) -> int:
  """This process's rows of a global batch, a multiple of its local devices (at least one each)."""
  n_local = jax.local_device_count()
  return max(n_local, batch_size // jax.process_count() // n_local * n_local)


def split_batches(data_cfg, split: str, batch_size: int) -> Iterator[dict]:
  """Eval-view host batches of a whole split for a global batch of `batch_size` (padded, masked)."""
  return pipeline.eval_iterator(data_cfg, split, batch_size=per_process_batch(batch_size))


def images_at(data_cfg, split: str, ids) -> np.ndarray:
  """Eval-view images (len(ids), S, S, 3) of the given positions of a split (one pass over it)."""
  ids = np.asarray(ids, np.int64).reshape(-1)
  want = set(ids.tolist())
  found: dict[int, np.ndarray] = {}
  for hb in pipeline.eval_iterator(
    data_cfg, split, batch_size=512, process_index=0, process_count=1
  ):
    for row, i in enumerate(hb["index"]):
      if int(i) in want:
        found[int(i)] = hb["image"][row]
    if len(found) == len(want):
      break
  return np.stack([found[int(i)] for i in ids])


def split_arrays(data_cfg, split: str) -> tuple[np.ndarray, np.ndarray]:
  """A whole split in memory: uint8 images (n, H, W, C) and int32 labels, in split order.

  The order is the `index` order of pipeline.eval_iterator. Needs fixed-size images (CIFAR, STL-10,
  synthetic).
  """
  if data_cfg.dataset == catalog.SYNTHETIC:
    return catalog.synthetic_arrays(split.split("[")[0], catalog.num_examples(data_cfg, split))
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

  data_dir = catalog.resolve_data_dir(data_cfg.get("data_dir"))
  catalog.dataset_info(data_cfg.dataset, data_dir)  # a clear error for a missing dataset
  builder = tfds.builder(data_cfg.dataset, data_dir=data_dir, try_gcs=False)
  if None in tuple(builder.info.features["image"].shape):
    raise ValueError(
      f"{data_cfg.dataset!r} has variable-size images and cannot be held in memory; use the "
      f"'features' linear mode, or a TFDS subset config for fine-tuning."
    )
  ds = builder.as_dataset(split=split, shuffle_files=False)
  ds = ds.map(lambda ex: (ex["image"], tf.cast(ex["label"], tf.int32))).batch(4096)
  images, labels = [], []
  for im, lb in ds.as_numpy_iterator():
    images.append(im)
    labels.append(lb)
  return np.concatenate(images), np.concatenate(labels)


def augmented_batches(
  ds: tf.data.Dataset,
  num_examples: int,
  *,
  batch_size: int,
  seed: int,
  aug,
  process_index: int = 0,
  shuffle_buffer: int = 50_000,
  skip_batches: int = 0,
) -> Iterator[dict]:
  """Endless host batches {'image' float32 (b, S, S, 3), 'label' int32 (b,)} of augmented views.

  Args:
    ds: this process's (uint8 image, label) examples.
    num_examples: how many there are (shuffle buffer size).
    batch_size: rows per process.
    seed: root seed; the shuffle order and the augmentation of stream position p come from (seed,
      process, p).
    aug: view config for augment.simclr_view (e.g. config_lib.augment.crop_flip).
    process_index: folds into the seeds so processes draw different views.
    shuffle_buffer: cap on the shuffle buffer (datasets that do not fit stream through it).
    skip_batches: start after this many batches (a resumed fine-tune), skipped before the
      augmentation, so the stream from there equals the uninterrupted one.
  """
  root = tf.random.experimental.stateless_fold_in(tf.constant([seed, 17], tf.int64), process_index)

  @tf.autograph.experimental.do_not_convert  # as pipeline.pretrain_dataset's views: no rewrite
  def view(pos, example):
    image, label = example
    image = tf.image.convert_image_dtype(image, tf.float32)
    if image.shape[-1] == 1:
      image = tf.tile(image, [1, 1, 3])
    s = tf.random.experimental.stateless_fold_in(root, pos)
    return {"image": augment.simclr_view(image, s, aug), "label": tf.cast(label, tf.int32)}

  ds = (
    ds.shuffle(
      max(1, min(num_examples, shuffle_buffer)),
      seed=seed * 1000 + process_index,
      reshuffle_each_iteration=True,
    )
    .repeat()
    .enumerate()
    .skip(int(skip_batches) * batch_size)
  )
  ds = ds.map(view, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  ds = ds.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)
  opts = tf.data.Options()
  opts.deterministic = True
  return ds.with_options(opts).as_numpy_iterator()


def augmented_array_batches(
  images: np.ndarray, labels: np.ndarray, *, batch_size: int, seed: int, aug, skip_batches: int = 0
) -> Iterator[dict]:
  """`augmented_batches` of in-memory examples: each process takes its contiguous share of them.

  Args:
    images: every example (all processes hold the same arrays), uint8 (n, H, W, C).
    labels: (n,) int labels.
    batch_size: the GLOBAL batch (each process yields batch_size / process_count rows).
    seed: root seed.
    aug: view config for augment.simclr_view.
    skip_batches: as in `augmented_batches`.
  """
  n, pc, pi = len(labels), jax.process_count(), jax.process_index()
  lo, hi = n * pi // pc, n * (pi + 1) // pc
  return augmented_batches(
    tf.data.Dataset.from_tensor_slices((images[lo:hi], labels[lo:hi])),
    hi - lo,
    batch_size=batch_size // pc,
    seed=seed,
    aug=aug,
    process_index=pi,
    skip_batches=skip_batches,
  )
