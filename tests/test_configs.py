"""The config library (contrastive_jax/config_lib) and every preset of every configs/*.py."""

import numpy as np
import pytest
import tensorflow as tf

from contrastive_jax.config_lib import augment as views
from contrastive_jax.data import augment as A


def test_view_defaults_are_simclr_cifar_and_overrides_apply():
  v = views.view(224, color_strength=1.0, blur_prob=0.5)
  assert (v.image_size, v.color_strength, v.blur_prob) == (224, 1.0, 0.5)
  assert (v.crop_area_min, v.color_prob, v.gray_prob, v.solarize_prob) == (0.08, 0.8, 0.2, 0.0)
  assert "resize_method" not in views.view(32)
  assert views.view(32, resize_method="bilinear").resize_method == "bilinear"
  # Types follow the defaults, so a locked config still takes float overrides of these fields.
  assert isinstance(views.view(32, blur_prob=0).blur_prob, float)


@pytest.mark.parametrize(
  "kwargs, match",
  [
    (dict(blur_probability=0.5), r"blur_probability.*fields of a view"),
    (dict(solarize_prob=1.5), r"solarize_prob=1.5.*\[0, 1\]"),
    (dict(crop_area_min=0.0), r"crop_area_min=0.0"),
    (dict(crop_area_min=0.9, crop_area_max=0.5), r"crop_area_min <= crop_area_max"),
  ],
)
def test_view_rejects_bad_fields(kwargs, match):
  with pytest.raises(ValueError, match=match):
    views.view(32, **kwargs)


def test_crop_flip_is_crop_then_flip_only():
  """simclr_view with crop_flip equals the crop and flip ops alone, on the same sub-seeds."""
  rng = np.random.default_rng(0)
  image = tf.constant(rng.uniform(size=(40, 30, 3)).astype(np.float32))
  cfg = views.crop_flip(16, crop_area_min=0.3)
  for s in range(4):
    seed = tf.constant([s, 7], tf.int64)
    got = A.simclr_view(image, seed, cfg).numpy()
    sub = tf.random.experimental.stateless_split(seed, num=6)  # simclr_view's per-op seeds
    ref = A.random_resized_crop(image, sub[0], 16, area_range=(0.3, 1.0))
    ref = A.random_flip(ref, sub[1]).numpy()
    np.testing.assert_allclose(got, ref, atol=1e-6)
