"""Image augmentation ops for contrastive views (TensorFlow, stateless randomness).

Every op takes ONE float32 image in [0, 1] of shape (H, W, 3) and a seed tensor of shape (2,)
(int32/int64) and returns a float32 image in [0, 1]. All randomness is stateless
(`tf.random.stateless_*`), so the same seed gives the same output eagerly and inside `tf.data`
(where ops run in a graph); sub-seeds are derived with `tf.random.experimental.stateless_split`.

The SimCLR view (Chen et al. 2020, appendix A) is: random resized crop -> horizontal flip -> colour
jitter (strength s, random order, p=0.8) -> grayscale (p=0.2) -> Gaussian blur -> solarize (BYOL's
second view). `simclr_view` composes these from a view config built by
`config_lib.augment.view`.
"""

from typing import Any
from collections.abc import Sequence

import tensorflow as tf


def _get(cfg: Any, name: str, default: Any) -> Any:
  """Reads `cfg.name` from a ConfigDict or a plain dict, with a default."""
  if hasattr(cfg, "get"):
    return cfg.get(name, default)
  return getattr(cfg, name, default)


def _split(seed: tf.Tensor, num: int) -> tf.Tensor:
  """Splits a (2,) seed into `num` independent (2,) seeds, shape (num, 2)."""
  return tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), num=num)


def _uniform(seed: tf.Tensor, minval: float = 0.0, maxval: float = 1.0) -> tf.Tensor:
  return tf.random.stateless_uniform([], seed=seed, minval=minval, maxval=maxval, dtype=tf.float32)


def _apply_with_prob(fn, image: tf.Tensor, seed: tf.Tensor, prob: float) -> tf.Tensor:
  """Applies `fn(image)` with probability `prob` (decided by `seed`); python-level skip when prob <= 0 or >= 1."""
  if prob <= 0.0:
    return image
  if prob >= 1.0:
    return fn(image)
  return tf.cond(_uniform(seed) < prob, lambda: fn(image), lambda: image)


# google-research/simclr tf2/data_util.py crop_and_resize: min_object_covered=0.1 with the whole image
# as the bounding box, i.e. a crop must cover at least 10% of the image (with area_range (0.08, 1)
# the effective minimum is 0.1, not 0.08).
MIN_OBJECT_COVERED = 0.1
# tf2/data_util.py CROP_PROPORTION: the ImageNet evaluation centre crop keeps 87.5% of the shorter side.
CROP_PROPORTION = 0.875


def crop_box(
  shape: tf.Tensor,
  seed: tf.Tensor,
  area_range: tuple[float, float] = (0.08, 1.0),
  aspect_range: tuple[float, float] = (3 / 4, 4 / 3),
  min_object_covered: float = MIN_OBJECT_COVERED,
) -> tuple[tf.Tensor, tf.Tensor]:
  """(begin, size) of a random Inception-style crop box of an image of `shape` (H, W, C).

  The box covers a fraction of the image in `area_range` (and at least `min_object_covered` of it)
  with width / height in `aspect_range`; after 100 failed attempts it is the whole image, as in
  tf.image.sample_distorted_bounding_box.
  """
  begin, size, _ = tf.image.stateless_sample_distorted_bounding_box(
    shape,
    bounding_boxes=tf.constant([[[0.0, 0.0, 1.0, 1.0]]]),
    seed=tf.cast(seed, tf.int64),
    min_object_covered=float(min_object_covered),
    aspect_ratio_range=list(aspect_range),
    area_range=list(area_range),
    max_attempts=100,
    use_image_if_no_bounding_boxes=True,
  )
  return begin, size


def random_resized_crop(
  image: tf.Tensor,
  seed: tf.Tensor,
  size: int,
  area_range: tuple[float, float] = (0.08, 1.0),
  aspect_range: tuple[float, float] = (3 / 4, 4 / 3),
  method: str = "bicubic",
  min_object_covered: float = MIN_OBJECT_COVERED,
) -> tf.Tensor:
  """Inception-style crop: a random box of relative area in `area_range` and aspect ratio in `aspect_range`.

  Args:
    image: float32 (H, W, 3) in [0, 1].
    seed: (2,) int seed.
    size: output side; the crop is resized to (size, size).
    area_range: (min, max) fraction of the image area covered by the crop.
    aspect_range: (min, max) width / height ratio of the crop.
    method: tf.image.resize method ('bicubic' as in SimCLR, 'bilinear' is faster).
    min_object_covered: smallest fraction of the image a crop may cover (SimCLR's 0.1; 0.0 lets
      area_range alone decide, as torchvision's RandomResizedCrop does).

  Returns:
    float32 (size, size, 3) in [0, 1].
  """
  begin, crop_size = crop_box(tf.shape(image), seed, area_range, aspect_range, min_object_covered)
  crop = tf.slice(image, begin, crop_size)
  crop = tf.image.resize(crop, [size, size], method=method)
  crop = tf.ensure_shape(crop, [size, size, None])
  return tf.clip_by_value(crop, 0.0, 1.0)


def random_flip(image: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
  """Horizontal flip with probability 1/2."""
  return tf.image.stateless_random_flip_left_right(image, seed=tf.cast(seed, tf.int64))


def jitter_factors(seed: tf.Tensor, strength: float, saturation: float | None = None) -> dict:
  """The random factors of `color_jitter(image, seed, strength, saturation=...)`.

  brightness ~ U(max(0, 1 - 0.8 s), 1 + 0.8 s) (multiplicative, SimCLR v2), contrast likewise,
  saturation ~ U(max(0, 1 - sat), 1 + sat) with sat = 0.8 s unless given, hue ~ U(-0.2 s, 0.2 s),
  and `order`, a random permutation of the four ops (0 brightness, 1 contrast, 2 saturation, 3 hue).
  """
  b, c, h = 0.8 * strength, 0.8 * strength, 0.2 * strength
  s = 0.8 * strength if saturation is None else float(saturation)
  if s < 0:
    raise ValueError(f"color saturation={s} must be >= 0 (a jitter range, e.g. 0.2).")
  seeds = _split(seed, 6)
  return dict(
    brightness=_uniform(seeds[0], max(0.0, 1.0 - b), 1.0 + b),
    contrast=_uniform(seeds[1], max(0.0, 1.0 - c), 1.0 + c),
    saturation=_uniform(seeds[2], max(0.0, 1.0 - s), 1.0 + s),
    hue=_uniform(seeds[3], -h, h),
    order=tf.argsort(tf.random.stateless_uniform([4], seed=seeds[4])),
  )


def color_jitter(
  image: tf.Tensor,
  seed: tf.Tensor,
  strength: float,
  prob: float = 0.8,
  saturation: float | None = None,
) -> tf.Tensor:
  """SimCLR colour distortion: brightness, contrast, saturation (0.8 s) and hue (0.2 s) in a random order.

  Brightness is multiplicative (SimCLR v2). The four factors (`jitter_factors`) are drawn first,
  then applied in an order given by a stateless random permutation (tf.switch_case per slot),
  clipping to [0, 1] after each. The whole jitter is applied with probability `prob`. `saturation`
  (None: 0.8 s) sets the saturation range on its own: BYOL (byol/utils/augmentations.py), MoCo v3
  (main_moco.py) and solo-learn's asymmetric CIFAR views use ColorJitter(0.4, 0.4, 0.2, 0.1), i.e.
  s = 0.5 with saturation 0.2.
  """
  if strength <= 0.0:
    return image
  f = jitter_factors(seed, strength, saturation)
  ops = (
    lambda y: y * f["brightness"],
    lambda y: tf.image.adjust_contrast(y, f["contrast"]),
    lambda y: tf.image.adjust_saturation(y, f["saturation"]),
    lambda y: tf.image.adjust_hue(y, f["hue"]),
  )

  def jitter(x):
    for i in range(4):
      # Bind the current x into each branch (default arguments, not late-binding closures).
      x = tf.switch_case(f["order"][i], [lambda op=op, x=x: op(x) for op in ops])
      x = tf.clip_by_value(x, 0.0, 1.0)
    return x

  return _apply_with_prob(jitter, image, _split(seed, 6)[5], prob)


def to_grayscale(image: tf.Tensor) -> tf.Tensor:
  """Luma grayscale, repeated to 3 channels."""
  return tf.tile(tf.image.rgb_to_grayscale(image), [1, 1, 3])


def random_grayscale(image: tf.Tensor, seed: tf.Tensor, prob: float = 0.2) -> tf.Tensor:
  """Converts to grayscale (3 equal channels) with probability `prob`."""
  return _apply_with_prob(to_grayscale, image, seed, prob)


def blur_kernel_size(side: int) -> int:
  """Odd kernel side of about 10% of the image side (SimCLR): 32 -> 3, 96 -> 9, 224 -> 23."""
  radius = max(int(side) // 10 // 2, 1)
  return 2 * radius + 1


def _blur(image: tf.Tensor, sigma: tf.Tensor, kernel_size: int) -> tf.Tensor:
  radius = kernel_size // 2
  x = tf.cast(tf.range(-radius, radius + 1), tf.float32)
  k = tf.exp(-0.5 * tf.square(x / sigma))
  k = k / tf.reduce_sum(k)
  k_h = tf.tile(tf.reshape(k, [1, kernel_size, 1, 1]), [1, 1, 3, 1])
  k_v = tf.tile(tf.reshape(k, [kernel_size, 1, 1, 1]), [1, 1, 3, 1])
  # Reflect padding keeps the borders from darkening (zero padding would).
  padded = tf.pad(image[None], [[0, 0], [radius, radius], [radius, radius], [0, 0]], mode="REFLECT")
  out = tf.nn.depthwise_conv2d(padded, k_h, strides=[1, 1, 1, 1], padding="VALID")
  out = tf.nn.depthwise_conv2d(out, k_v, strides=[1, 1, 1, 1], padding="VALID")
  return tf.clip_by_value(out[0], 0.0, 1.0)


def gaussian_blur(
  image: tf.Tensor, seed: tf.Tensor, prob: float, sigma_range: tuple[float, float] = (0.1, 2.0)
) -> tf.Tensor:
  """Separable Gaussian blur, kernel `blur_kernel_size(H)`, sigma ~ U(sigma_range), with probability `prob`.

  The image side must be static (it is after random_resized_crop); the kernel size follows the
  height.
  """
  side = image.shape[0]
  if side is None:
    raise ValueError(
      "gaussian_blur needs a static image height; apply it after random_resized_crop."
    )
  seeds = _split(seed, 2)
  sigma = _uniform(seeds[0], sigma_range[0], sigma_range[1])
  ksize = blur_kernel_size(side)
  return _apply_with_prob(lambda x: _blur(x, sigma, ksize), image, seeds[1], prob)


def solarize(image: tf.Tensor, seed: tf.Tensor, prob: float, threshold: float = 0.5) -> tf.Tensor:
  """Inverts pixels >= threshold with probability `prob` (BYOL view 2)."""
  return _apply_with_prob(lambda x: tf.where(x < threshold, x, 1.0 - x), image, seed, prob)


def simclr_view(image: tf.Tensor, seed: tf.Tensor, cfg: Any) -> tf.Tensor:
  """One augmented view: crop -> flip -> colour jitter -> grayscale -> blur -> solarize.

  Args:
    image: float32 (H, W, 3) in [0, 1], any size.
    seed: (2,) int seed for this view.
    cfg: a view config (see `config_lib.augment.view`).

  Returns:
    float32 (image_size, image_size, 3) in [0, 1].
  """
  s = _split(seed, 6)
  size = int(_get(cfg, "image_size", 32))
  x = random_resized_crop(
    image,
    s[0],
    size,
    area_range=(_get(cfg, "crop_area_min", 0.08), _get(cfg, "crop_area_max", 1.0)),
    aspect_range=(_get(cfg, "aspect_min", 3 / 4), _get(cfg, "aspect_max", 4 / 3)),
    method=_get(cfg, "resize_method", "bicubic"),
    min_object_covered=float(_get(cfg, "crop_min_object_covered", MIN_OBJECT_COVERED)),
  )
  if _get(cfg, "flip", True):
    x = random_flip(x, s[1])
  x = color_jitter(
    x,
    s[2],
    float(_get(cfg, "color_strength", 0.5)),
    float(_get(cfg, "color_prob", 0.8)),
    saturation=_get(cfg, "color_saturation", None),
  )
  x = random_grayscale(x, s[3], float(_get(cfg, "gray_prob", 0.2)))
  x = gaussian_blur(
    x,
    s[4],
    float(_get(cfg, "blur_prob", 0.0)),
    (_get(cfg, "blur_sigma_min", 0.1), _get(cfg, "blur_sigma_max", 2.0)),
  )
  x = solarize(x, s[5], float(_get(cfg, "solarize_prob", 0.0)))
  return x


def eval_view(
  image: tf.Tensor,
  image_size: int,
  crop_proportion: float = CROP_PROPORTION,
  method: str = "bicubic",
) -> tf.Tensor:
  """Deterministic eval view: identity if already (image_size, image_size) (CIFAR); else the official
  ImageNet centre crop.

  google-research/simclr tf2/data_util.py center_crop: a centred square of side
  rint(crop_proportion * min(H, W)) (offsets rounded up, ((H - side) + 1) // 2), resized to
  image_size x image_size (bicubic), clipped to [0, 1]. BYOL's _decode_and_center_crop keeps the same
  224 / (224 + 32) = 0.875.
  """
  static = image.shape
  if static[0] == image_size and static[1] == image_size:
    return image
  shape = tf.shape(image)
  h, w = shape[0], shape[1]
  side = tf.cast(tf.math.rint(crop_proportion * tf.cast(tf.minimum(h, w), tf.float32)), tf.int32)
  x = tf.image.crop_to_bounding_box(image, (h - side + 1) // 2, (w - side + 1) // 2, side, side)
  x = tf.image.resize(x, [image_size, image_size], method=method)
  x = tf.ensure_shape(x, [image_size, image_size, None])
  return tf.clip_by_value(x, 0.0, 1.0)


def views_seeds(seed: tf.Tensor) -> tf.Tensor:
  """Two independent (2,) seeds for the two views of one element, shape (2, 2)."""
  return _split(seed, 2)


__all__: Sequence[str] = (
  "crop_box",
  "random_resized_crop",
  "random_flip",
  "jitter_factors",
  "color_jitter",
  "random_grayscale",
  "to_grayscale",
  "blur_kernel_size",
  "gaussian_blur",
  "solarize",
  "simclr_view",
  "eval_view",
  "views_seeds",
)
