"""Class-balanced labelled subsets for semi-supervised evaluation (e.g. a 1 % / 10 % label fine-tune or probe).

`balanced_subset` draws the same number of examples from every class, reproducibly for a seed, and
`write_subset` / `read_subset` keep the choice as a plain text list of indices (one per line, with a
'#' header naming how it was drawn) so that a run can be repeated and compared with others.

ImageNet: do not draw a subset here. The SimCLR 1 % and 10 % label splits are TFDS's canonical
configs 'imagenet2012_subset/1pct' and 'imagenet2012_subset/10pct' (train split); load those so that
numbers are comparable with the literature. These splits are NOT class-balanced in the sense of this
module.
"""

from __future__ import annotations

import os

import numpy as np


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
  tmp = f"{path}.tmp"
  with open(tmp, "w") as f:
    f.write(header + "\n")
    f.write("".join(f"{i}\n" for i in indices))
  os.replace(tmp, path)
  return path


def read_subset(path: str) -> np.ndarray:
  """Reads a `write_subset` file (lines starting with '#' and blank lines are skipped) as int64 indices."""
  with open(path) as f:
    values = [line.strip() for line in f]
  values = [v for v in values if v and not v.startswith("#")]
  try:
    return np.asarray([int(v) for v in values], np.int64)
  except ValueError as e:
    raise ValueError(f"{path}: not a subset file (one integer index per line): {e}") from None
