"""Augmentation ops against the official pipelines (issue 12, docs/fidelity.md).

- crops cover at least 10% of the image (google-research/simclr tf2/data_util.py crop_and_resize:
  min_object_covered=0.1), and area_range alone decides with 0.0 (torchvision's RandomResizedCrop);
- colour jitter's saturation range is its own field (BYOL / MoCo v3 / solo-learn: 0.2 beside 0.4);
- the ImageNet evaluation view is the official centre crop (0.875, bicubic), written here from
  tf2/data_util.py center_crop; CIFAR-sized images pass through unchanged.
"""

import numpy as np
import pytest
import tensorflow as tf

from contrastive_jax.config_lib import augment as views
from contrastive_jax.data import augment as A

SEEDS = [tf.constant([i, 7 * i + 3], tf.int64) for i in range(300)]


def _areas(shape, min_object_covered, area_range=(0.08, 1.0)):
  out = []
  for s in SEEDS:
    _, size = A.crop_box(tf.constant(shape), s, area_range, min_object_covered=min_object_covered)
    out.append(int(size[0]) * int(size[1]) / (shape[0] * shape[1]))
  return np.array(out)


def test_crops_cover_at_least_ten_percent_like_simclr():
  official = _areas((64, 80, 3), A.MIN_OBJECT_COVERED)
  assert A.MIN_OBJECT_COVERED == 0.1
  assert official.min() >= 0.1 and official.max() <= 1.0
  torch_like = _areas((64, 80, 3), 0.0)
  assert (torch_like < 0.1).sum() >= 10 and torch_like.min() >= 0.08
  # With area_range above 10% the constraint is redundant: the very same boxes.
  np.testing.assert_array_equal(
    _areas((64, 80, 3), 0.1, (0.2, 1.0)), _areas((64, 80, 3), 0.0, (0.2, 1.0))
  )


def test_simclr_view_reads_crop_min_object_covered():
  image = tf.random.stateless_uniform([40, 48, 3], seed=[1, 2])
  cfg = views.view(16, color_strength=0.0, gray_prob=0.0)
  for s in SEEDS[:8]:
    sub = tf.random.experimental.stateless_split(s, num=6)  # simclr_view's per-op seeds
    for moc in (0.0, 0.1):
      cfg.crop_min_object_covered = moc
      got = A.simclr_view(image, s, cfg).numpy()
      crop = A.random_resized_crop(image, sub[0], 16, min_object_covered=moc)
      want = A.random_flip(crop, sub[1]).numpy()
      np.testing.assert_allclose(got, want, atol=1e-6)


def test_saturation_is_its_own_field():
  for s in SEEDS[:60]:
    tied = A.jitter_factors(s, 0.5)
    own = A.jitter_factors(s, 0.5, saturation=0.2)
    # Same draws, only the saturation range differs: 0.8 s = 0.4 vs the official 0.2.
    for k in ("brightness", "contrast", "hue"):
      assert float(tied[k]) == float(own[k])
    assert 0.6 <= float(tied["saturation"]) <= 1.4
    assert 0.8 <= float(own["saturation"]) <= 1.2
    assert 0.6 <= float(own["brightness"]) <= 1.4 and abs(float(own["hue"])) <= 0.1
  sats = [float(A.jitter_factors(s, 0.5, saturation=0.2)["saturation"]) for s in SEEDS]
  assert min(sats) < 0.82 and max(sats) > 1.18  # the whole official range is used
  x = tf.random.stateless_uniform([8, 8, 3], seed=[3, 4])
  np.testing.assert_array_equal(
    A.color_jitter(x, SEEDS[0], 0.5, 1.0, saturation=0.4).numpy(),
    A.color_jitter(x, SEEDS[0], 0.5, 1.0).numpy(),
  )
  tied = views.view(8, color_prob=1.0, gray_prob=0.0)
  own = views.view(8, color_prob=1.0, gray_prob=0.0)
  own.color_saturation = 0.4  # = 0.8 s: the same view as without the field
  np.testing.assert_array_equal(
    A.simclr_view(x, SEEDS[1], own).numpy(), A.simclr_view(x, SEEDS[1], tied).numpy()
  )
  own.color_saturation = 0.0
  assert not np.array_equal(
    A.simclr_view(x, SEEDS[1], own).numpy(), A.simclr_view(x, SEEDS[1], tied).numpy()
  )
  with pytest.raises(ValueError, match="saturation=-0.1"):
    A.jitter_factors(SEEDS[0], 0.5, saturation=-0.1)


def simclr_center_crop(image, height, width, crop_proportion=0.875):
  """google-research/simclr tf2/data_util.py center_crop (with _compute_crop_shape), verbatim."""
  shape = tf.shape(image)
  image_height, image_width = shape[0], shape[1]
  aspect_ratio = width / height
  image_width_float = tf.cast(image_width, tf.float32)
  image_height_float = tf.cast(image_height, tf.float32)

  def _requested_aspect_ratio_wider_than_image():
    crop_height = tf.cast(
      tf.math.rint(crop_proportion / aspect_ratio * image_width_float), tf.int32
    )
    crop_width = tf.cast(tf.math.rint(crop_proportion * image_width_float), tf.int32)
    return crop_height, crop_width

  def _image_wider_than_requested_aspect_ratio():
    crop_height = tf.cast(tf.math.rint(crop_proportion * image_height_float), tf.int32)
    crop_width = tf.cast(
      tf.math.rint(crop_proportion * aspect_ratio * image_height_float), tf.int32
    )
    return crop_height, crop_width

  crop_height, crop_width = tf.cond(
    aspect_ratio > image_width_float / image_height_float,
    _requested_aspect_ratio_wider_than_image,
    _image_wider_than_requested_aspect_ratio,
  )
  offset_height = ((image_height - crop_height) + 1) // 2
  offset_width = ((image_width - crop_width) + 1) // 2
  image = tf.image.crop_to_bounding_box(image, offset_height, offset_width, crop_height, crop_width)
  image = tf.image.resize([image], [height, width], method=tf.image.ResizeMethod.BICUBIC)[0]
  # preprocess_for_eval
  image = tf.reshape(image, [height, width, 3])
  return tf.clip_by_value(image, 0.0, 1.0)


@pytest.mark.parametrize("shape", [(100, 140), (140, 100), (97, 97), (300, 225), (61, 64)])
def test_eval_view_is_the_official_centre_crop(shape):
  image = tf.random.stateless_uniform([*shape, 3], seed=[5, shape[0]])
  want = simclr_center_crop(image, 48, 48).numpy()
  np.testing.assert_allclose(A.eval_view(image, 48).numpy(), want, atol=1e-6)
  ds = tf.data.Dataset.from_tensors(image).map(lambda x: A.eval_view(x, 48))
  np.testing.assert_allclose(next(iter(ds)).numpy(), want, atol=1e-6)


def test_eval_view_cifar_is_the_identity():
  # tf2/data.py get_preprocess_fn: no test crop for images of 32 pixels or fewer.
  image = tf.random.stateless_uniform([32, 32, 3], seed=[6, 7])
  assert A.eval_view(image, 32) is image
