"""Class-balanced labelled subsets for semi-supervised evaluation (e.g. a 1 % / 10 % label fine-tune or probe).

`balanced_subset` draws the same number of examples from every class, reproducibly for a seed, and
`write_subset` / `read_subset` keep the choice as a plain text list of indices (one per line, with a
'#' header naming how it was drawn) so that a run can be repeated and compared with others.

ImageNet: do not draw a subset here. The SimCLR 1 % and 10 % label splits are TFDS's canonical
configs 'imagenet2012_subset/1pct' and 'imagenet2012_subset/10pct' (train split); load those so that
numbers are comparable with the literature. These splits are NOT class-balanced in the sense of this
module; `imagenet_subset` loads them.

`labelled_subset` is the fine-tune's subset of a training split: drawn once, written to
W2/subset_{pct}pct_seed{seed}.txt, and re-read from there on later runs.
"""

from __future__ import annotations

import logging
import os

import jax
import numpy as np

from contrastive_jax import workdir as workdir_lib
from contrastive_jax.data import catalog, eval_views

_IMAGENET_SUBSETS = {0.01: "1pct", 0.1: "10pct"}


def balanced_subset(labels, fraction: float, seed: int = 0) -> np.ndarray:
  """Indices of a class-balanced subset: round(fraction * n / C) examples of every class, at least 1.

  Args:
    labels: (n,) int class labels of the full split (all C classes that appear are sampled).
    fraction: share of the split to keep, in (0, 1].
    seed: NumPy seed; the same (labels, fraction, seed) gives the same subset.

  Returns:
    Sorted int64 indices into labels.

  Raises:
    ValueError: when a class has fewer examples than the per-class count.
  """
  labels = np.asarray(labels).reshape(-1)
  if not 0.0 < fraction <= 1.0:
    raise ValueError(f"subset fraction must be in (0, 1], got {fraction}")
  if labels.size == 0:
    raise ValueError("balanced_subset: no labels")
  classes, counts = np.unique(labels, return_counts=True)
  per_class = max(1, round(fraction * labels.size / classes.size))
  short = classes[counts < per_class]
  if short.size:
    raise ValueError(
      f"balanced_subset: {per_class} examples per class requested but classes {short[:10].tolist()} have "
      f"fewer (smallest has {counts.min()}); lower the fraction"
    )
  rng = np.random.default_rng(seed)
  chosen = [rng.choice(np.flatnonzero(labels == c), per_class, replace=False) for c in classes]
  return np.sort(np.concatenate(chosen)).astype(np.int64)


def write_subset(
  path: str, indices, *, fraction: float | None = None, seed: int | None = None, note: str = ""
) -> str:
  """Writes indices as text, one per line, after a '#' header; atomically (temp file, then rename).

  Args:
    path: output file.
    indices: int indices.
    fraction, seed: recorded in the header (how the subset was drawn).
    note: free text for the header (e.g. the dataset and split).

  Returns:
    path.
  """
  indices = np.asarray(indices, np.int64).reshape(-1)
  header = f"# contrastive_jax subset: count={indices.size} fraction={fraction} seed={seed}"
  if note:
    header += f" note={note}"
  text = header + "\n" + "".join(f"{i}\n" for i in indices)
  workdir_lib.write_text(workdir_lib.resolve(path, "subset path"), text)  # whole, local or gs://
  return path


def read_subset(path: str) -> np.ndarray:
  """Reads a `write_subset` file (lines starting with '#' and blank lines are skipped) as int64 indices."""
  values = [
    line.strip() for line in workdir_lib.resolve(path, "subset path").read_text().splitlines()
  ]
  values = [v for v in values if v and not v.startswith("#")]
  try:
    return np.asarray([int(v) for v in values], np.int64)
  except ValueError as e:
    raise ValueError(f"{path}: not a subset file (one integer index per line): {e}") from None


def pct_name(fraction: float) -> str:
  """'1' for 0.01, '10' for 0.1, '0.5' for 0.005 (the {pct} of file names and result keys)."""
  return f"{round(100 * float(fraction), 6):g}"


def labelled_subset(
  data_cfg, fraction: float, seed: int, workdir: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """The class-balanced labelled subset of the training split.

  Returns:
    (images uint8 (m, H, W, C), labels (m,), ids (m,) positions in the split); the ids are read from
    W2/subset_{pct}pct_seed{seed}.txt when present, else drawn and written there.
  """
  images, labels = eval_views.split_arrays(data_cfg, data_cfg.train_split)
  path = os.path.join(workdir, f"subset_{pct_name(fraction)}pct_seed{seed}.txt")
  if fraction >= 1.0:
    ids = np.arange(len(labels), dtype=np.int64)
  elif workdir_lib.resolve(path, "subset path").exists():
    ids = read_subset(path)
    if ids.size and (ids.min() < 0 or ids.max() >= len(labels)):
      raise ValueError(
        f"{path}: ids out of range for the {len(labels)}-example split {data_cfg.train_split!r}; "
        f"delete the file to draw a new subset."
      )
    logging.info("Re-using the labelled subset %s (%d examples).", path, ids.size)
  else:
    ids = balanced_subset(labels, fraction, seed)
    if jax.process_index() == 0:
      write_subset(
        path, ids, fraction=fraction, seed=seed, note=f"{data_cfg.dataset}:{data_cfg.train_split}"
      )
    logging.info(
      "Drew a %d-example class-balanced subset (%s of %s); ids in %s.",
      ids.size,
      fraction,
      data_cfg.dataset,
      path,
    )
  return images[ids], labels[ids], ids


def imagenet_subset(data_cfg, fraction: float):
  """TFDS's canonical SimCLR label split of ImageNet for 1 % / 10 % (None for other data).

  Returns:
    (this process's tf.data.Dataset of (image, label), examples over all processes), or None.
  """
  name = _IMAGENET_SUBSETS.get(round(float(fraction), 6))
  if not data_cfg.dataset.startswith("imagenet2012") or name is None:
    return None
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

  full = f"imagenet2012_subset/{name}"
  data_dir = catalog.resolve_data_dir(data_cfg.get("data_dir"))
  catalog.dataset_info(full, data_dir)  # a clear error when it is not prepared
  builder = tfds.builder(full, data_dir=data_dir, try_gcs=False)
  split = tfds.even_splits("train", jax.process_count())[jax.process_index()]
  ds = builder.as_dataset(split=split, shuffle_files=True).map(
    lambda ex: (ex["image"], ex["label"])
  )
  return ds, int(builder.info.splits["train"].num_examples)
