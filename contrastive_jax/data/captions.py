"""Where captions come from: class names and prompt templates, a folder of images with a caption file
beside each, and a synthetic set of compositional captions. NumPy and TensorFlow (image decoding) only.

- Templates (`templates(name)`, `class_names(dataset)`): CLIP's prompt templates ('cifar10': 18,
  'imagenet': 80, 'simple': 1) and class names (CLIP's curated CIFAR-10 and ImageNet names; else the
  TFDS label names), from assets/clip_prompts.json (MIT, see assets/LICENSE).
- A folder of images with captions (`load_folder`): every image file under the split's directory
  (recursively) whose name with the extension replaced by `.txt` exists; each non-empty line of that
  file is one caption of the image (one is drawn per step in training).
- The synthetic compositional set (`synthetic`): 32x32 images of one shape of some colour, size and
  place, captioned "a large red circle in the top left" (and a paraphrase); its label is the shape.
"""

import functools
import json
import logging
import os

import numpy as np
import tensorflow as tf

from contrastive_jax.data import folder

_PROMPTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "assets", "clip_prompts.json")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".gif", ".bmp")


@functools.lru_cache(maxsize=1)
def _prompts() -> dict:
  with open(_PROMPTS, encoding="utf-8") as f:
    return json.load(f)


def template_names() -> list[str]:
  return sorted(_prompts()["templates"])


def templates(name) -> list[str]:
  """Templates by name (config.text.templates), or a list of '{}' strings given directly."""
  if isinstance(name, (list, tuple)):
    out = [str(t) for t in name]
  else:
    table = _prompts()["templates"]
    if name not in table:
      raise ValueError(
        f"Unknown prompt templates {name!r} (config.text.templates / config.zero_shot.templates); "
        f"use one of {sorted(table)} or a list of strings with one '{{}}' for the class name."
      )
    out = list(table[name])
  bad = [t for t in out if t.count("{}") != 1]
  if not out or bad:
    raise ValueError(f"Prompt templates need exactly one '{{}}' each; got {bad or out!r}.")
  return out


def class_names(dataset: str, tfds_names=None) -> list[str]:
  """CLIP's curated names for CIFAR-10 and ImageNet; else `tfds_names` with '_' -> ' '."""
  curated = _prompts()["classnames"]
  base = dataset.split("/")[0].split(":")[0]
  if base in curated:
    return list(curated[base])
  if tfds_names is None:
    raise ValueError(f"No class names known for dataset {dataset!r}.")
  return [str(n).replace("_", " ") for n in tfds_names]


def fill(template_list, names) -> list[str]:
  """All prompts, class-major: prompt c * T + t is template t of class c."""
  return [t.format(n) for n in names for t in template_list]


# ----------------------------------------------------------------------------- folder of captions


def _split_root(root: str, split: str) -> str:
  root = os.path.expanduser(root)
  if not os.path.isdir(root):
    raise ValueError(
      f"config.dataset={root!r} is not a directory. With config.text.source='folder' it is a "
      f"directory of images, each with a caption file beside it (cat.jpg + cat.txt)."
    )
  base = split.split("[")[0]
  sub = os.path.join(root, base)
  return sub if os.path.isdir(sub) else root


def list_folder(root: str, split: str) -> tuple[list[str], list[list[str]], list[str]]:
  """(image paths, their captions, images skipped for lack of a caption file), sorted by path."""
  top = _split_root(root, split)
  paths, caps, missing = [], [], []
  for d, dirs, files in os.walk(top):
    dirs[:] = sorted(x for x in dirs if not x.startswith("."))
    for fname in sorted(files):
      if fname.startswith(".") or not fname.lower().endswith(IMAGE_EXTENSIONS):
        continue
      path = os.path.join(d, fname)
      txt = os.path.splitext(path)[0] + ".txt"
      lines = []
      if os.path.isfile(txt):
        with open(txt, encoding="utf-8") as f:
          lines = [line.strip() for line in f if line.strip()]
      if lines:
        paths.append(path)
        caps.append(lines)
      else:
        missing.append(path)
  return paths, caps, missing


@functools.lru_cache(maxsize=4)
def load_folder(root: str, split: str, image_size: int):
  """(uint8 images (n, S, S, 3), captions: list of lists of str) of a folder split, in memory."""
  paths, caps, missing = list_folder(root, split)
  if missing:
    logging.warning(
      "%s split %r: %d images have no caption file (.txt beside the image) and are left out, "
      "e.g. %s",
      root,
      split,
      len(missing),
      ", ".join(missing[:3]),
    )
  images, kept = [], []
  for path, c in zip(paths, caps):
    try:
      images.append(folder.decode(tf.io.read_file(path), image_size).numpy())
      kept.append(c)
    except (tf.errors.InvalidArgumentError, tf.errors.UnimplementedError, ValueError) as e:
      logging.warning("Skipping %s: not a readable image (%s).", path, str(e).splitlines()[0][:80])
  if not images:
    raise ValueError(
      f"config.dataset={root!r}, split {split!r}: no image with a caption file was found. Put "
      f"each caption in a .txt file beside its image (photo1.jpg + photo1.txt)."
    )
  return np.stack(images), kept


# ----------------------------------------------------------------------------- synthetic set

COLOURS = {
  "red": (0.9, 0.1, 0.1),
  "green": (0.1, 0.8, 0.1),
  "blue": (0.15, 0.25, 0.95),
  "yellow": (0.9, 0.9, 0.1),
  "purple": (0.6, 0.1, 0.9),
  "white": (0.95, 0.95, 0.95),
}
# Names of data/catalog.py's 'synthetic' classes (their disc colours, _PALETTE order).
PIPELINE_SYNTHETIC_NAMES = (
  "red",
  "green",
  "blue",
  "yellow",
  "magenta",
  "cyan",
  "orange",
  "purple",
  "grey",
  "brown",
)
SHAPES = ("circle", "square", "triangle", "cross")
PLACES = ("top left", "top right", "bottom left", "bottom right")
SIZES = ("small", "large")
PARAPHRASES = ("a {size} {colour} {shape} in the {place}", "{place}: one {colour} {shape}, {size}")


def synthetic_caption(size: int, colour: int, shape: int, place: int, paraphrase: int = 0) -> str:
  return PARAPHRASES[paraphrase].format(
    size=SIZES[size], colour=list(COLOURS)[colour], shape=SHAPES[shape], place=PLACES[place]
  )


def synthetic_captions() -> list[str]:
  """Every caption of the synthetic set; index = ((((s * C + c) * H + h) * P + p) * 2 + paraphrase)."""
  return [
    synthetic_caption(s, c, h, p, q)
    for s in range(len(SIZES))
    for c in range(len(COLOURS))
    for h in range(len(SHAPES))
    for p in range(len(PLACES))
    for q in range(len(PARAPHRASES))
  ]


def synthetic(split: str, n: int, image_size: int = 32):
  """The compositional set: uint8 images (n, S, S, 3), attributes (n, 4) int32 (size, colour,
  shape, place) and shape labels (n,) int32, deterministic per split."""
  rng = np.random.default_rng({"train": 10, "test": 11}.get(split, 12))
  attrs = np.stack(
    [rng.integers(0, k, n) for k in (len(SIZES), len(COLOURS), len(SHAPES), len(PLACES))], 1
  ).astype(np.int32)
  s = image_size
  yy, xx = np.mgrid[0:s, 0:s].astype(np.float32)
  quarter = s / 4
  cx = np.where(attrs[:, 3] % 2 == 0, quarter, 3 * quarter) + rng.uniform(-1.5, 1.5, n)
  cy = np.where(attrs[:, 3] < 2, quarter, 3 * quarter) + rng.uniform(-1.5, 1.5, n)
  r = np.where(attrs[:, 0] == 0, s * 0.11, s * 0.22) * rng.uniform(0.9, 1.1, n)
  dx, dy = xx[None] - cx[:, None, None], yy[None] - cy[:, None, None]
  r3 = r[:, None, None]
  shapes = np.stack(
    [
      dx**2 + dy**2 < r3**2,
      np.maximum(abs(dx), abs(dy)) < 0.85 * r3,
      (dy < 0.8 * r3) & (dy > -r3) & (abs(dx) < 0.6 * (dy + r3)),
      ((abs(dx) < r3 / 3) & (abs(dy) < r3)) | ((abs(dy) < r3 / 3) & (abs(dx) < r3)),
    ],
    1,
  )
  mask = shapes[np.arange(n), attrs[:, 2]].astype(np.float32)[..., None]
  colour = np.asarray(list(COLOURS.values()), np.float32)[attrs[:, 1]][:, None, None, :]
  background = rng.uniform(0.0, 0.3, (n, s, s, 3)).astype(np.float32)
  img = background * (1 - mask) + mask * colour
  img = np.clip(img + rng.normal(0, 0.03, img.shape), 0, 1)
  return (img * 255).round().astype(np.uint8), attrs, attrs[:, 2].copy()


def synthetic_caption_ids(attrs: np.ndarray) -> np.ndarray:
  """(n, 2) indices into synthetic_captions() of each image's two paraphrases."""
  a = attrs.astype(np.int64)
  base = ((a[:, 0] * len(COLOURS) + a[:, 1]) * len(SHAPES) + a[:, 2]) * len(PLACES) + a[:, 3]
  return (base[:, None] * len(PARAPHRASES) + np.arange(len(PARAPHRASES))[None]).astype(np.int32)
