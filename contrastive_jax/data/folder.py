"""A user's image folder as a dataset: config.dataset = 'folder:/path/to/root' (or folder:gs://...).

Layout: one sub-directory per class, images inside, any format tf.image.decode_image reads (JPEG,
PNG, GIF, BMP). If the root holds `train/` and `test/` (or another split name), each split reads its
own directory; otherwise every split reads the whole root.

One class map: the sorted class directories of the TRAINING split give labels 0, 1, ...; every other
split uses that map, so an eval split without class `b` still labels `c` as 2, and a class the
training split lacks is an error. The train loop saves the map as W/class_map.json.

Files are listed once (tf.io.gfile: local paths and gs://). A file that cannot be an image is
skipped and counted: a dangling link, an empty file, or one whose first bytes are no image format's
signature; the count is logged with a few names. Two readers (data/pipeline.py picks one):
- in memory (small folders): every file is decoded once, in parallel threads, resized (shorter side
  to `image_size`, centre crop) and kept as uint8; a file that then fails to decode is skipped and
  counted too;
- streaming (large folders, or config.cache=False): the file list is the record stream and
  `decode` runs inside tf.data (parallel map), so nothing is decoded before training starts. A file
  with an image signature that still fails to decode stops the stream with TensorFlow's error.
"""

import concurrent.futures
import functools
import logging
import os
import re

import numpy as np
import tensorflow as tf

PREFIX = "folder:"
# First bytes of the formats tf.image.decode_image reads.
_SIGNATURES = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF87a", b"GIF89a", b"BM")


def is_folder(name: str) -> bool:
  return isinstance(name, str) and name.startswith(PREFIX)


def _root(name: str) -> str:
  root = name[len(PREFIX) :]
  return root if "://" in root else os.path.expanduser(root)


def split_dir(name: str, split: str) -> str:
  """The directory of `split` of dataset `name` ('folder:ROOT')."""
  root = _root(name)
  if not tf.io.gfile.isdir(root):
    raise ValueError(
      f"config.dataset={name!r}: {root!r} is not a directory. Use "
      f"'folder:/path/to/root' with one sub-directory of images per class."
    )
  if "[" in split:
    raise ValueError(f"Folder datasets do not support sliced splits; got split={split!r}.")
  sub = os.path.join(root, split)
  return sub if tf.io.gfile.isdir(sub) and _class_dirs(sub) else root


def _class_dirs(root: str) -> list[str]:
  return sorted(
    d.rstrip("/")
    for d in tf.io.gfile.listdir(root)
    if not d.startswith(".") and tf.io.gfile.isdir(os.path.join(root, d))
  )


@functools.lru_cache(maxsize=8)
def classes(name: str, train_split: str = "train") -> tuple[str, ...]:
  """The class map: sorted class directories of the training split (label i = classes[i])."""
  root = split_dir(name, train_split)
  found = _class_dirs(root)
  if not found:
    raise ValueError(
      f"config.dataset={name!r}: no class sub-directories in {root!r}. Put the images "
      f"of each class in their own sub-directory (root/cat/1.jpg, root/dog/2.png)."
    )
  return tuple(found)


@functools.lru_cache(maxsize=8)
def list_files(name: str, split: str, train_split: str = "train"):
  """(paths, int32 labels, [(path, why)] skipped) of `split`, labels from the training class map."""
  names = classes(name, train_split)
  root = split_dir(name, split)
  here = _class_dirs(root)
  unknown = sorted(set(here) - set(names))
  if unknown:
    raise ValueError(
      f"config.dataset={name!r}, split {split!r}: class director{'ies' if len(unknown) > 1 else 'y'} "
      f"{unknown} under {root!r} not in the training split's classes {list(names)}. Labels come "
      f"from the training split; remove them or add them to the training split."
    )
  paths, labels, bad = [], [], []
  for cls in here:
    label = names.index(cls)
    for fname in sorted(tf.io.gfile.listdir(os.path.join(root, cls))):
      path = os.path.join(root, cls, fname)
      if fname.startswith(".") or fname.endswith("/"):
        continue
      if os.path.islink(path) and not os.path.exists(path):
        bad.append((path, "dangling link"))
        continue
      if tf.io.gfile.isdir(path):
        continue
      why = _not_an_image(path)
      if why:
        bad.append((path, why))
        continue
      paths.append(path)
      labels.append(label)
  return tuple(paths), np.asarray(labels, np.int32), tuple(bad)


def _not_an_image(path: str) -> str | None:
  try:
    with tf.io.gfile.GFile(path, "rb") as f:
      head = f.read(8)
  except (tf.errors.OpError, OSError) as e:
    return f"unreadable: {type(e).__name__}"
  if not head:
    return "empty file"
  if not head.startswith(_SIGNATURES):
    return "not a JPEG, PNG, GIF or BMP file"
  return None


def identity(name: str, train_split: str = "train") -> dict:
  """What a checkpoint's data fingerprint records of a folder: class list and file count (no path)."""
  paths, _, bad = list_files(name, train_split, train_split)
  return {"classes": list(classes(name, train_split)), "files": len(paths) + len(bad)}


def _report(name: str, split: str, root: str, bad, total: int) -> None:
  if bad:
    logging.warning(
      "%s split %r: skipped %d of %d files that could not be decoded as images, e.g. %s",
      name,
      split,
      len(bad),
      total,
      "; ".join(f"{p} ({why})" for p, why in bad[:3]),
    )
  if len(bad) == total:
    raise ValueError(
      f"config.dataset={name!r}, split {split!r}: none of the {len(bad)} files under "
      f"{root!r} could be decoded as an image (JPEG, PNG, GIF or BMP)"
      + (f", e.g. {bad[0][0]}: {bad[0][1]}" if bad else "")
      + "."
    )


def stream(name: str, split: str, train_split: str = "train"):
  """(paths, labels) for the streaming reader; logs (and fails on) undecodable files as `load`."""
  paths, labels, bad = list_files(name, split, train_split)
  _report(name, split, split_dir(name, split), list(bad), len(paths) + len(bad))
  return np.asarray(paths, object), labels


@functools.lru_cache(maxsize=4)
def load(
  name: str, split: str, image_size: int, train_split: str = "train"
) -> tuple[np.ndarray, np.ndarray, int]:
  """(uint8 images (n, S, S, 3), int32 labels (n,), number of files skipped) of one split."""
  paths, labels, listed_bad = list_files(name, split, train_split)
  images, kept, failed = decode_paths(paths, image_size)
  bad = list(listed_bad) + failed
  _report(name, split, split_dir(name, split), bad, len(paths) + len(listed_bad))
  return images, np.asarray(labels[kept], np.int32), len(bad)


def decode_paths(paths, image_size: int) -> tuple[np.ndarray, np.ndarray, list]:
  """(uint8 images (m, S, S, 3), positions in `paths` of the m decoded files, [(path, why)] failed)."""

  def one(path):
    try:
      return _decode_eager(path, image_size), None
    except (tf.errors.InvalidArgumentError, tf.errors.UnimplementedError, ValueError) as e:
      # TF prefixes its op's name ('{{function_node __wrapped__DecodeImage_device_...}}').
      why = re.sub(r"\{\{[^}]*\}\}\s*", "", str(e).splitlines()[0]) if str(e) else ""
      return None, (why or type(e).__name__)[:120]

  with concurrent.futures.ThreadPoolExecutor(max(1, min(16, os.cpu_count() or 1))) as pool:
    decoded = list(pool.map(one, paths))  # TF ops release the GIL: decodes run in parallel
  images, kept, bad = [], [], []
  for i, (path, (image, why)) in enumerate(zip(paths, decoded)):
    if image is None:
      bad.append((path, why))
    else:
      images.append(image)
      kept.append(i)
  if not images:
    return np.zeros((0, image_size, image_size, 3), np.uint8), np.zeros((0,), np.int64), bad
  return np.stack(images), np.asarray(kept, np.int64), bad


def list_tree(name: str) -> tuple[tuple[str, ...], tuple]:
  """(paths, [(path, why)] skipped) of every file under ROOT of 'folder:ROOT', at any depth.

  No class structure is needed (mode=embed): sub-directories are only a way to organise the files.
  Sorted paths; hidden files and directories are left out; a dangling link or a file that is no
  image (see `_not_an_image`) is skipped and counted, as in `list_files`.
  """
  root = _root(name)
  if not tf.io.gfile.isdir(root):
    raise ValueError(
      f"config.dataset={name!r}: {root!r} is not a directory. Use 'folder:/path/to/images' (any "
      f"nesting of sub-directories)."
    )
  paths, bad, seen = [], [], set()
  for top, dirs, files in tf.io.gfile.walk(root):
    real = top if "://" in top else os.path.realpath(top)
    if real in seen:  # a directory link back up the tree: list it once
      dirs[:] = []
      continue
    seen.add(real)
    dirs[:] = sorted(d.rstrip("/") for d in dirs if not d.startswith("."))  # walk honours this
    for fname in sorted(files):
      if fname.startswith("."):
        continue
      path = os.path.join(top, fname)
      if os.path.islink(path) and not os.path.exists(path):
        bad.append((path, "dangling link"))
        continue
      why = _not_an_image(path)
      if why:
        bad.append((path, why))
      else:
        paths.append(path)
  return tuple(sorted(paths)), tuple(sorted(bad))


def decode(contents: tf.Tensor, size: int) -> tf.Tensor:
  """Encoded bytes -> uint8 (size, size, 3): shorter side resized to `size`, centre crop (graph op)."""
  image = tf.image.decode_image(contents, channels=3, expand_animations=False)
  shape = tf.shape(image)
  h, w = tf.cast(shape[0], tf.float32), tf.cast(shape[1], tf.float32)
  tf.debugging.assert_positive(tf.minimum(shape[0], shape[1]), message="empty image")
  scale = size / tf.minimum(h, w)
  nh = tf.maximum(size, tf.cast(tf.round(h * scale), tf.int32))
  nw = tf.maximum(size, tf.cast(tf.round(w * scale), tf.int32))
  image = tf.image.resize(image, tf.stack([nh, nw]), antialias=True)
  top, left = (nh - size) // 2, (nw - size) // 2
  image = image[top : top + size, left : left + size]
  image = tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8)
  return tf.ensure_shape(image, [size, size, 3])


def _decode_eager(path: str, size: int) -> np.ndarray:
  return decode(tf.io.read_file(path), size).numpy()
