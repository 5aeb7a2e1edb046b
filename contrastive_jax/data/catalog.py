"""Dataset catalog: where a dataset is, what it looks like, and how pipeline.py will read it.

A dataset name (config.dataset) is one of
- a TFDS image dataset with 'image' and 'label' features ('cifar10', 'imagenet2012', ...), found in
  the data_dir of `resolve_data_dir` and never downloaded;
- 'synthetic' (`SYNTHETIC`): 10 classes of 32x32 striped discs generated in memory (`synthetic_arrays`);
- 'folder:/root': a user's class-per-directory image folder (data/folder.py).

Kept apart from the tf.data stream (data/pipeline.py) because most callers need only these facts:
data/source.py, protocols/evaluate.py, pretrained.py, fingerprint.py and data/eval_views.py ask for
class counts, split sizes, the reader kind or the TFDS version, and never build a stream. The
image-text streams (data/image_text*.py) reuse the same catalog. Imports go one way: pipeline.py
and image_text*.py import this module, never the reverse.

NumPy and data/folder.py (which imports TensorFlow for decoding) only; tensorflow_datasets is
imported lazily so the 'synthetic' dataset needs no TFDS, and jax only for default process indices.
The names with a leading underscore are private to contrastive_jax.data (the readers share them).
"""

import os
import pathlib
from typing import Any

import numpy as np

from contrastive_jax.data import augment, folder

SYNTHETIC = "synthetic"
_SYNTHETIC_NUM_CLASSES = 10
_SYNTHETIC_SIZE = 32
_CACHE_LIMIT_BYTES = 2 << 30  # Decoded shards up to 2 GiB are kept in memory when cache is unset.


def _get(cfg: Any, name: str, default: Any = None) -> Any:
  return augment._get(cfg, name, default)  # pylint: disable=protected-access


def _process_defaults(process_index: int | None, process_count: int | None) -> tuple[int, int]:
  """(process_index, process_count), jax's where unset. Here, not in pipeline.py, because `reader`
  predicts the in-memory decision from this process's shard size."""
  if process_index is None or process_count is None:
    import jax  # pylint: disable=g-import-not-at-top

    process_index = jax.process_index() if process_index is None else process_index
    process_count = jax.process_count() if process_count is None else process_count
  return int(process_index), int(process_count)


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
  if folder.is_folder(name):  # 'folder:/root': decoded images of a class-per-directory folder
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
  n = int(builder.info.splits[split].num_examples) // _process_defaults(None, None)[1]
  shape = tuple(builder.info.features["image"].shape)
  return "memory" if _tfds_in_memory(n, shape, cache) else "streaming"


def _tfds_in_memory(n: int, shape: tuple, cache: bool | None) -> bool:
  """Whether a TFDS shard of `n` images of `shape` is decoded into memory: the one rule that
  pipeline._Shard applies and `reader` predicts. Variable-size images (None in shape) cannot be
  stacked, so they stream whatever `cache` says; cache=None keeps a shard that fits the limit."""
  if None in shape:
    return False
  if cache is None:
    return n * int(np.prod(shape)) <= _CACHE_LIMIT_BYTES
  return bool(cache)


def version(cfg: Any) -> str | None:
  """The TFDS version of cfg.dataset (None for synthetic and folder datasets)."""
  if cfg.dataset == SYNTHETIC or folder.is_folder(cfg.dataset):
    return None
  return str(_builder(cfg.dataset, _get(cfg, "data_dir")).info.version)


__all__: list[str] = [
  "resolve_data_dir",
  "dataset_info",
  "num_examples",
  "synthetic_arrays",
  "reader",
  "version",
  "SYNTHETIC",
]
