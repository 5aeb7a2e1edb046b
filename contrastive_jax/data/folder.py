"""A user's image folder as a dataset: config.dataset = 'folder:/path/to/root'.

Layout: one sub-directory per class (sorted names give labels 0, 1, ...), images inside, any format
tf.image.decode_image reads (JPEG, PNG, GIF, BMP). If the root holds `train/` and `test/` (or
another split name), each split reads its own directory; otherwise every split reads the whole root.

Images are decoded once, resized (shorter side to `image_size`, centre crop) and kept in memory as
uint8, so the in-memory reader of data/pipeline.py (exact shuffle, resumable) serves them. A file
that fails to decode is skipped and counted; the count is logged with a few names. A split where no
file decodes fails with a clear error.
"""

import functools
import logging
import os

import numpy as np
import tensorflow as tf

PREFIX = "folder:"


def is_folder(name: str) -> bool:
  return isinstance(name, str) and name.startswith(PREFIX)


def split_dir(name: str, split: str) -> str:
  """The directory of `split` of dataset `name` ('folder:ROOT')."""
  root = os.path.expanduser(name[len(PREFIX) :])
  if not os.path.isdir(root):
    raise ValueError(
      f"config.dataset={name!r}: {root!r} is not a directory. Use "
      f"'folder:/path/to/root' with one sub-directory of images per class."
    )
  if "[" in split:
    raise ValueError(f"Folder datasets do not support sliced splits; got split={split!r}.")
  sub = os.path.join(root, split)
  return sub if os.path.isdir(sub) and _class_dirs(sub) else root


def _class_dirs(root: str) -> list[str]:
  return sorted(
    d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)) and not d.startswith(".")
  )


def classes(name: str, split: str = "train") -> list[str]:
  return _class_dirs(split_dir(name, split))


@functools.lru_cache(maxsize=4)
def load(name: str, split: str, image_size: int) -> tuple[np.ndarray, np.ndarray, int]:
  """(uint8 images (n, S, S, 3), int32 labels (n,), number of files skipped) of one split."""
  root = split_dir(name, split)
  names = _class_dirs(root)
  if not names:
    raise ValueError(
      f"config.dataset={name!r}: no class sub-directories in {root!r}. Put the images "
      f"of each class in their own sub-directory (root/cat/1.jpg, root/dog/2.png)."
    )
  images, labels, bad = [], [], []
  for label, cls in enumerate(names):
    for fname in sorted(os.listdir(os.path.join(root, cls))):
      path = os.path.join(root, cls, fname)
      if not os.path.isfile(path) or fname.startswith("."):
        continue
      try:
        images.append(_decode(path, image_size))
        labels.append(label)
      except (tf.errors.InvalidArgumentError, tf.errors.UnimplementedError, ValueError) as e:
        bad.append((path, str(e).splitlines()[0][:120] if str(e) else type(e).__name__))
  if bad:
    logging.warning(
      "%s split %r: skipped %d of %d files that could not be decoded as images, e.g. %s",
      name,
      split,
      len(bad),
      len(bad) + len(images),
      "; ".join(f"{p} ({why})" for p, why in bad[:3]),
    )
  if not images:
    raise ValueError(
      f"config.dataset={name!r}, split {split!r}: none of the {len(bad)} files under "
      f"{root!r} could be decoded as an image (JPEG, PNG, GIF or BMP)"
      + (f", e.g. {bad[0][0]}: {bad[0][1]}" if bad else "")
      + "."
    )
  return np.stack(images), np.asarray(labels, np.int32), len(bad)


def _decode(path: str, size: int) -> np.ndarray:
  image = tf.image.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
  h, w = int(image.shape[0]), int(image.shape[1])
  if h == 0 or w == 0:
    raise ValueError("empty image")
  scale = size / min(h, w)
  nh, nw = max(size, round(h * scale)), max(size, round(w * scale))
  image = tf.image.resize(image, (nh, nw), antialias=True)
  top, left = (nh - size) // 2, (nw - size) // 2
  image = image[top : top + size, left : left + size]
  return np.asarray(tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8))
