"""Augmentation ops: eager and inside tf.data, shapes, range, seeded reproducibility."""

import functools

import numpy as np
import pytest
import tensorflow as tf

from contrastive_jax.config_lib import augment as views
from contrastive_jax.data import augment as A

SIZE = 32


def _image(seed=0, size=SIZE):
  rng = np.random.default_rng(seed)
  return tf.constant(rng.uniform(0, 1, (size, size + 8, 3)).astype(np.float32))


OPS = {
  "crop": lambda x, s: A.random_resized_crop(x, s, 24),
  "crop_bilinear": lambda x, s: A.random_resized_crop(x, s, 24, method="bilinear"),
  "flip": A.random_flip,
  "color": lambda x, s: A.color_jitter(x, s, 1.0, prob=1.0),
  "gray": lambda x, s: A.random_grayscale(x, s, prob=0.5),
  "blur": lambda x, s: A.gaussian_blur(x, s, prob=1.0),
  "solarize": lambda x, s: A.solarize(x, s, prob=0.5),
  "view": lambda x, s: A.simclr_view(x, s, views.view(24, color_strength=1.0, blur_prob=0.5)),
}
SEEDS = [tf.constant([i, 7 * i + 1], tf.int64) for i in range(12)]


def _eager(op, x):
  return np.stack([op(x, s).numpy() for s in SEEDS])


def _in_data(op, x):
  ds = tf.data.Dataset.from_tensor_slices(tf.stack(SEEDS)).map(lambda s: op(x, s))
  return np.stack(list(ds.as_numpy_iterator()))


@pytest.mark.parametrize("name", sorted(OPS))
def test_op_eager_and_in_tf_data(name):
  op, x = OPS[name], _image()
  eager, graph = _eager(op, x), _in_data(op, x)
  expected = (24, 24, 3) if name in ("crop", "crop_bilinear", "view") else tuple(x.shape)
  for out in (eager, graph):
    assert out.shape == (len(SEEDS),) + expected
    assert out.dtype == np.float32
    assert out.min() >= 0.0 and out.max() <= 1.0
  # Same seed -> same output (twice eagerly; eager vs tf.data agree up to op-level float
  # differences).
  np.testing.assert_array_equal(eager, _eager(op, x))
  np.testing.assert_allclose(eager, graph, atol=1e-5)
  # Different seeds -> different outputs (at least most pairs).
  distinct = {eager[i].tobytes() for i in range(len(SEEDS))}
  assert len(distinct) >= (2 if name in ("flip", "gray", "solarize") else len(SEEDS) - 1), name


def test_two_views_differ():
  x = _image()
  s1, s2 = A.views_seeds(tf.constant([3, 4]))
  cfg = views.view(SIZE)
  v1, v2 = A.simclr_view(x, s1, cfg), A.simclr_view(x, s2, cfg)
  assert v1.shape == v2.shape == (SIZE, SIZE, 3)
  assert not np.allclose(v1.numpy(), v2.numpy())


def test_grayscale_channels_equal_and_prob():
  x = _image()
  outs = [A.random_grayscale(x, s, prob=1.0).numpy() for s in SEEDS[:3]]
  for g in outs:
    np.testing.assert_array_equal(g[..., 0], g[..., 1])
    np.testing.assert_array_equal(g[..., 1], g[..., 2])
  np.testing.assert_array_equal(A.random_grayscale(x, SEEDS[0], prob=0.0).numpy(), x.numpy())
  hits = sum(
    np.allclose(
      A.random_grayscale(x, tf.constant([i, 0]), 0.2).numpy()[..., 0],
      A.random_grayscale(x, tf.constant([i, 0]), 0.2).numpy()[..., 1],
    )
    for i in range(100)
  )
  assert 5 <= hits <= 40


@pytest.mark.parametrize("side,ksize", [(32, 3), (64, 7), (96, 9), (224, 23), (10, 3)])
def test_blur_kernel_size_follows_side(side, ksize):
  assert A.blur_kernel_size(side) == ksize


def test_blur_smooths_and_keeps_constants():
  x = _image(size=64)
  blurred = A.gaussian_blur(x, tf.constant([1, 2]), prob=1.0, sigma_range=(1.5, 2.0)).numpy()
  assert blurred.std() < x.numpy().std() * 0.7
  const = tf.fill([40, 40, 3], 0.3)
  np.testing.assert_allclose(
    A.gaussian_blur(const, tf.constant([1, 2]), 1.0).numpy(), 0.3, atol=1e-6
  )


def test_solarize_inverts_above_threshold():
  x = tf.constant(np.linspace(0, 1, 32 * 32 * 3, dtype=np.float32).reshape(32, 32, 3))
  y = A.solarize(x, tf.constant([0, 0]), prob=1.0).numpy()
  xs = x.numpy()
  np.testing.assert_allclose(y, np.where(xs < 0.5, xs, 1 - xs))


def test_color_jitter_prob_zero_and_strength_zero_are_identity():
  x = _image()
  np.testing.assert_array_equal(A.color_jitter(x, SEEDS[0], 1.0, prob=0.0).numpy(), x.numpy())
  np.testing.assert_array_equal(A.color_jitter(x, SEEDS[0], 0.0).numpy(), x.numpy())


def test_crop_area_range():
  x = _image(size=64)
  # With area in [0.9, 1] and aspect 1, a 64x72 image gives crops of nearly full height.
  for s in SEEDS[:4]:
    out = A.random_resized_crop(
      x, s, 16, area_range=(1.0, 1.0), aspect_range=(72 / 64, 72 / 64), method="bilinear"
    )
    ref = tf.image.resize(x, [16, 16], method="bilinear")
    np.testing.assert_allclose(out.numpy(), np.clip(ref.numpy(), 0, 1), atol=1e-5)


def test_eval_view_is_deterministic_resize_and_centre_crop():
  x = _image()  # (32, 40, 3)
  out = A.eval_view(x, 16).numpy()
  assert out.shape == (16, 16, 3) and out.min() >= 0 and out.max() <= 1
  np.testing.assert_array_equal(out, A.eval_view(x, 16).numpy())
  same = tf.zeros([16, 16, 3])
  assert A.eval_view(same, 16) is same
  ds = tf.data.Dataset.from_tensors(x).map(functools.partial(A.eval_view, image_size=16))
  np.testing.assert_allclose(next(iter(ds)).numpy(), out, atol=1e-6)


def test_default_config_fields():
  cfg = views.view(96, color_strength=1.0, blur_prob=0.5)
  for f in (
    "image_size",
    "crop_area_min",
    "crop_area_max",
    "aspect_min",
    "aspect_max",
    "flip",
    "color_strength",
    "color_prob",
    "gray_prob",
    "blur_prob",
    "blur_sigma_min",
    "blur_sigma_max",
    "solarize_prob",
  ):
    assert f in cfg
  assert cfg.image_size == 96 and cfg.blur_prob == 0.5
