"""An export for TensorBoard's embedding projector: vectors, labels and a sprite of thumbnails.

The projector plugin (tensorboard/plugins/projector/projector_plugin.py) reads
`projector_config.pbtxt` (a text-format ProjectorConfig) from a run directory or the logdir itself;
every path in it is relative to that directory and must stay inside it. Per embedding it reads:
- tensor_path: a TSV file, one row of tab-separated floats per point;
- metadata_path: a TSV file, one row per point; with more than one column the first line is the
  header (columns become the projector's "label by" / "colour by" / search fields);
- sprite: one PNG with the thumbnails in a square grid, row-major from the top left, each
  single_image_dim = [width, height] pixels (the plugin caps the sprite at 8192 x 8192).

Written with epath, so a gs:// logdir gets the same files (the plugin itself serves local logdirs).
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Sequence

import numpy as np
from etils import epath

CONFIG_FILE = "projector_config.pbtxt"  # tensorboard.plugins.projector.metadata.PROJECTOR_FILENAME
SUBDIR = "projector"
_MAX_SPRITE = 8192  # pixels per side the projector's WebGL texture takes


def _clean(text) -> str:
  """A TSV cell: tabs and newlines would split it."""
  return str(text).replace("\t", " ").replace("\n", " ").replace("\r", " ")


def sprite(images, thumb: int | None = None) -> tuple[np.ndarray, int]:
  """The sprite image (uint8 (S, S, 3), S = side * thumb) of images (n, H, W, C) in [0, 1] or uint8.

  Args:
    images: (n, H, W, C), C = 1 or 3.
    thumb: thumbnail side in pixels (default: the image side, capped so the sprite fits 8192 px).

  Returns:
    (sprite, thumbnail side).
  """
  images = np.asarray(images)
  if images.ndim != 4 or images.shape[-1] not in (1, 3):
    raise ValueError(f"sprite: need images (n, H, W, 1 or 3), got {images.shape}")
  if images.dtype != np.uint8:
    images = (np.clip(images.astype(np.float32), 0, 1) * 255).round().astype(np.uint8)
  if images.shape[-1] == 1:
    images = np.repeat(images, 3, axis=-1)
  n = images.shape[0]
  side = max(1, math.ceil(math.sqrt(n)))
  thumb = int(thumb or max(images.shape[1:3]))
  thumb = max(1, min(thumb, _MAX_SPRITE // side))
  if images.shape[1:3] != (thumb, thumb):
    from PIL import Image  # pylint: disable=g-import-not-at-top  # matplotlib's own dependency

    images = np.stack([np.asarray(Image.fromarray(im).resize((thumb, thumb))) for im in images])
  out = np.full((side * thumb, side * thumb, 3), 255, np.uint8)  # white after the last point
  for i, im in enumerate(images):
    r, c = divmod(i, side)
    out[r * thumb : (r + 1) * thumb, c * thumb : (c + 1) * thumb] = im
  return out, thumb


def _png(image: np.ndarray) -> bytes:
  from PIL import Image  # pylint: disable=g-import-not-at-top

  buf = io.BytesIO()
  Image.fromarray(image).save(buf, format="PNG")
  return buf.getvalue()


def write_projector(
  logdir,
  features,
  labels,
  *,
  class_names: Sequence[str] | None = None,
  images=None,
  ids=None,
  tensor_name: str = "embeddings",
  max_points: int = 5000,
  seed: int = 0,
) -> dict:
  """Writes vectors, metadata and (with images) a sprite for the projector into `logdir`.

  Args:
    logdir: the run's TensorBoard directory (local path or URI); files go to logdir/projector/ and
      the config to logdir/projector_config.pbtxt (replacing an older one).
    features: (n, d) embeddings.
    labels: (n,) int labels (class_names index them).
    class_names: names per label (None: the label numbers).
    images: optional (n, H, W, C) images of the points (the sprite thumbnails).
    ids: optional (n,) ids (e.g. positions in the split, file names); default range(n).
    tensor_name: the embedding's name in the projector's menu.
    max_points: a seeded random subset of this many points is exported (in their original order).
    seed: subset seed.

  Returns:
    {'config', 'tensors', 'metadata', 'sprite' (or None), 'points', 'dim', 'thumb'} (paths as str).
  """
  x = np.asarray(features, np.float32)
  y = np.asarray(labels).reshape(-1)
  n = x.shape[0]
  ids = np.arange(n) if ids is None else np.asarray(ids).reshape(-1)
  if (
    x.ndim != 2 or y.shape[0] != n or ids.shape[0] != n or (images is not None and len(images) != n)
  ):
    raise ValueError(
      f"write_projector: need features (n, d), labels (n,), ids (n,), images (n, ...); got "
      f"{x.shape}, {y.shape}, {ids.shape}, {None if images is None else np.shape(images)}"
    )
  if max_points < 1:
    raise ValueError(f"write_projector: max_points={max_points} must be >= 1")
  keep = np.arange(n)
  if n > max_points:
    keep = np.sort(np.random.default_rng(seed).choice(n, max_points, replace=False))
  x, y, ids = x[keep], y[keep], ids[keep]

  root = epath.Path(logdir)
  sub = root / SUBDIR
  sub.mkdir(parents=True, exist_ok=True)
  stem = re.sub(r"[^A-Za-z0-9.-]+", "_", tensor_name).strip("_") or "embeddings"  # test[:500]
  tensors, metadata = sub / f"{stem}.tsv", sub / f"{stem}_metadata.tsv"
  # repr-exact float32 text: the plugin parses each cell with float().
  tensors.write_text("".join("\t".join(f"{v:.9g}" for v in row) + "\n" for row in x))
  rows = ["class\tlabel\tid"]
  for label, i in zip(y, ids):
    name = class_names[int(label)] if class_names is not None else str(int(label))
    rows.append(f"{_clean(name)}\t{int(label)}\t{_clean(i)}")
  metadata.write_text("\n".join(rows) + "\n")

  from tensorboard.plugins.projector import projector_config_pb2  # pylint: disable=g-import-not-at-top
  from google.protobuf import text_format  # pylint: disable=g-import-not-at-top

  config = projector_config_pb2.ProjectorConfig()
  emb = config.embeddings.add()
  emb.tensor_name = tensor_name
  emb.tensor_path = f"{SUBDIR}/{tensors.name}"
  emb.metadata_path = f"{SUBDIR}/{metadata.name}"
  emb.tensor_shape.extend([int(x.shape[0]), int(x.shape[1])])
  sprite_path, thumb = None, 0
  if images is not None:
    image, thumb = sprite(np.asarray(images)[keep])
    sprite_path = sub / f"{stem}_sprite.png"
    sprite_path.write_bytes(_png(image))
    emb.sprite.image_path = f"{SUBDIR}/{sprite_path.name}"
    emb.sprite.single_image_dim.extend([thumb, thumb])
  config_path = root / CONFIG_FILE
  config_path.write_text(text_format.MessageToString(config))
  return {
    "config": str(config_path),
    "tensors": str(tensors),
    "metadata": str(metadata),
    "sprite": None if sprite_path is None else str(sprite_path),
    "points": int(x.shape[0]),
    "dim": int(x.shape[1]),
    "thumb": int(thumb),
  }
