"""Input pipeline: sharding, determinism, bit-exact resume, eval coverage, clear errors.

TFDS paths run on tiny datasets written into a temporary data_dir with
tfds.dataset_builders.TfDataBuilder (grayscale non-square, and variable-size colour), so no network
and no shared data are needed; one test reads the real CIFAR-10 when
/work/shared/tensorflow_datasets (or $TFDS_DATA_DIR) has it.
"""

import os
import subprocess
import sys
import time

import ml_collections
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from contrastive_jax.config_lib import augment as views
from contrastive_jax.data import augment as A
from contrastive_jax.data import catalog as C
from contrastive_jax.data import pipeline as P


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
  """A TFDS data_dir with 'tiny_gray' (20x24x1, 3 classes) and 'tiny_var' (variable-size RGB)."""
  d = str(tmp_path_factory.mktemp("tfds"))

  def gray(n, s):
    rng = np.random.default_rng(s)
    return tf.data.Dataset.from_tensor_slices(
      {
        "image": rng.integers(0, 256, (n, 20, 24, 1)).astype(np.uint8),
        "label": rng.integers(0, 3, n),
      }
    )

  def var(n, s):
    rng = np.random.default_rng(s)
    shapes = [(int(rng.integers(12, 30)), int(rng.integers(12, 30))) for _ in range(n)]
    images = [rng.integers(0, 256, hw + (3,)).astype(np.uint8) for hw in shapes]
    labels = rng.integers(0, 4, n)
    return tf.data.Dataset.from_generator(
      lambda: ({"image": im, "label": lb} for im, lb in zip(images, labels)),
      output_signature={
        "image": tf.TensorSpec((None, None, 3), tf.uint8),
        "label": tf.TensorSpec((), tf.int64),
      },
    )

  tfds.dataset_builders.TfDataBuilder(
    name="tiny_gray",
    version="1.0.0",
    data_dir=d,
    split_datasets={"train": gray(50, 0), "test": gray(31, 1)},
    features=tfds.features.FeaturesDict(
      {
        "image": tfds.features.Image(shape=(20, 24, 1)),
        "label": tfds.features.ClassLabel(num_classes=3),
      }
    ),
  ).download_and_prepare()
  tfds.dataset_builders.TfDataBuilder(
    name="tiny_var",
    version="1.0.0",
    data_dir=d,
    split_datasets={"train": var(40, 2), "test": var(23, 3)},
    features=tfds.features.FeaturesDict(
      {
        "image": tfds.features.Image(shape=(None, None, 3)),
        "label": tfds.features.ClassLabel(num_classes=4),
      }
    ),
  ).download_and_prepare()
  return d


def _cfg(dataset="synthetic", data_dir=None, image_size=16, cache=None, aug=None, **kw):
  cfg = ml_collections.ConfigDict(
    dict(
      dataset=dataset,
      data_dir=data_dir,
      train_split="train",
      image_size=image_size,
      shuffle_buffer=64,
      aug=aug or views.view(image_size),
      aug2=None,
      cache=cache,
      seed=0,
      synthetic_train_size=256,
      synthetic_test_size=101,
    )
  )
  cfg.update(kw)
  return cfg


def _identity_aug(image_size, aspect=1.0):
  """A view without randomness: whole image, resized; lets tests see which example each row came from."""
  aug = views.view(image_size, color_strength=0.0)
  aug.update(
    dict(
      crop_area_min=1.0,
      crop_area_max=1.0,
      aspect_min=aspect,
      aspect_max=aspect,
      flip=False,
      gray_prob=0.0,
      resize_method="bilinear",
    )
  )
  return aug


def _source(cfg, split):
  """The split's uint8 images and labels in split order."""
  if cfg.dataset == "synthetic":
    return C.synthetic_arrays(split, C.num_examples(cfg, split))
  ds = tfds.builder(cfg.dataset, data_dir=cfg.data_dir).as_dataset(split=split, shuffle_files=False)
  items = list(ds.as_numpy_iterator())
  return [x["image"] for x in items], np.array([x["label"] for x in items])


def _match(rows, refs):
  """Index of the reference image each row equals (within 1e-4), -1 if none."""
  refs = np.stack(refs)
  out = []
  for r in rows:
    d = np.abs(refs - r[None]).reshape(len(refs), -1).max(1)
    out.append(int(d.argmin()) if d.min() < 1e-4 else -1)
  return np.array(out)


# -- synthetic data --------------------------------------------------------------------------------


def test_synthetic_is_deterministic_with_class_structure():
  im1, lb1 = C.synthetic_arrays("train", 200)
  im2, lb2 = C.synthetic_arrays("train", 200)
  np.testing.assert_array_equal(im1, im2)
  np.testing.assert_array_equal(lb1, lb2)
  assert im1.shape == (200, 32, 32, 3) and im1.dtype == np.uint8 and lb1.dtype == np.int32
  assert np.bincount(lb1, minlength=10).min() == 20
  means = np.stack([im1[lb1 == c].mean((0, 1, 2)) for c in range(10)])
  assert np.linalg.norm(means[:, None] - means[None], axis=-1)[np.triu_indices(10, 1)].min() > 3
  assert not np.array_equal(C.synthetic_arrays("test", 200)[0], im1)
  assert C.dataset_info("synthetic", None, _cfg()) == (10, (32, 32, 3), {"train": 256, "test": 101})


@pytest.mark.slow  # a fresh interpreter importing TensorFlow: ~10 s
def test_synthetic_needs_no_tfds():
  code = (
    "import sys; sys.modules['tensorflow_datasets'] = None\n"  # any import of tfds now fails
    "import ml_collections\n"
    "from contrastive_jax.config_lib import augment\n"
    "from contrastive_jax.data import pipeline\n"
    "cfg = ml_collections.ConfigDict(dict(dataset='synthetic', image_size=32, seed=0,"
    " aug=augment.view(32), synthetic_train_size=64, synthetic_test_size=16))\n"
    "b = next(pipeline.pretrain_iterator(cfg, batch_size=8, process_index=0, process_count=1))\n"
    "e = list(pipeline.eval_iterator(cfg, 'test', batch_size=8, process_index=0, process_count=1))\n"
    "print('OK', b['view1'].shape, len(e))\n"
  )
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  env = dict(os.environ, PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""))
  out = subprocess.run(
    [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120
  )
  assert "OK (8, 32, 32, 3) 2" in out.stdout, out.stderr[-2000:]


def test_pretrain_batch_format_and_views_differ():
  cfg = _cfg(image_size=24, aug=views.view(24, color_strength=0.5, blur_prob=0.5))
  batch = next(P.pretrain_iterator(cfg, batch_size=16, process_index=0, process_count=1))
  assert set(batch) == {"view1", "view2", "label"}
  for k in ("view1", "view2"):
    assert batch[k].shape == (16, 24, 24, 3) and batch[k].dtype == np.float32
    assert batch[k].min() >= 0.0 and batch[k].max() <= 1.0
  assert batch["label"].dtype == np.int32 and batch["label"].shape == (16,)
  diffs = np.abs(batch["view1"] - batch["view2"]).reshape(16, -1).max(1)
  assert (diffs > 1e-3).all()


def test_pretrain_variable_size_colour_dataset_streams(tiny_dir):
  cfg = _cfg(
    "tiny_var", tiny_dir, image_size=16, cache=True
  )  # variable sizes cannot be stacked: streams
  it = P.pretrain_iterator(cfg, batch_size=8, process_index=0, process_count=1)
  for _ in range(6):  # > one epoch of 40
    batch = next(it)
    assert batch["view1"].shape == batch["view2"].shape == (8, 16, 16, 3)
    assert batch["label"].max() < 4


def test_aug2_overrides_second_view():
  aug2 = views.view(16)
  aug2.gray_prob = 1.0
  cfg = _cfg(aug2=aug2)
  batch = next(P.pretrain_iterator(cfg, batch_size=8, process_index=0, process_count=1))
  v2 = batch["view2"]
  np.testing.assert_allclose(v2[..., 0], v2[..., 2], atol=1e-6)
  assert np.abs(batch["view1"][..., 0] - batch["view1"][..., 2]).max() > 1e-2


# -- shards, epochs, resume ------------------------------------------------------------------------

SHARD_CASES = [
  ("synthetic", None, 32, 1.0),
  ("tiny_gray", True, 20, 1.2),
  ("tiny_gray", False, 20, 1.2),
]


@pytest.mark.parametrize("dataset,cache,size,aspect", SHARD_CASES)
def test_process_shards_are_disjoint_and_cover_one_epoch(tiny_dir, dataset, cache, size, aspect):
  cfg = _cfg(
    dataset,
    tiny_dir,
    image_size=size,
    cache=cache,
    aug=_identity_aug(size, aspect),
    train_split="train",
  )
  images, _ = _source(cfg, "train")
  refs = [
    A.simclr_view(
      A.tf.image.convert_image_dtype(
        tf.tile(tf.constant(im), [1, 1, 3 // im.shape[-1]]), tf.float32
      ),
      tf.constant([0, 0]),
      cfg.aug,
    ).numpy()
    for im in images
  ]
  n = len(images)
  seen = []
  for k in range(2):
    n_local = n * (k + 1) // 2 - n * k // 2
    b = 5
    it = P.pretrain_iterator(cfg, batch_size=b, process_index=k, process_count=2)
    rows = np.concatenate([next(it)["view1"] for _ in range(n_local // b)])
    idx = _match(rows, refs)
    assert (idx >= 0).all()
    assert len(set(idx)) == len(idx)  # within one epoch, no repeats
    seen.append(set(idx))
  assert not seen[0] & seen[1]
  if n % 5 == 0:
    assert seen[0] | seen[1] == set(range(n))


@pytest.mark.parametrize(
  "dataset,cache",
  [
    ("synthetic", None),
    ("tiny_gray", False),
    # Same code path as synthetic once the shard is in memory.
    pytest.param("tiny_gray", True, marks=pytest.mark.slow),
  ],
)
def test_resume_equals_uninterrupted_stream(tiny_dir, dataset, cache):
  cfg = _cfg(dataset, tiny_dir, cache=cache)
  b, total = (
    12,
    9,
  )  # 25 examples per process (tiny_gray) / 128 (synthetic): crosses epoch boundaries
  if dataset == "synthetic":
    b, total = 48, 6
  full = list(
    _take(P.pretrain_iterator(cfg, batch_size=b, process_index=1, process_count=2), total)
  )
  for k in (2, total - 2):
    resumed = list(
      _take(
        P.pretrain_iterator(cfg, batch_size=b, process_index=1, process_count=2, start_step=k),
        total - k,
      )
    )
    for want, got in zip(full[k:], resumed):
      for key in want:
        np.testing.assert_array_equal(want[key], got[key])


def _take(it, n):
  for _ in range(n):
    yield next(it)


def test_same_seed_same_batches_other_seed_differs():
  cfg = _cfg()
  a = list(
    _take(P.pretrain_iterator(cfg, batch_size=32, process_index=0, process_count=1, seed=3), 3)
  )
  b = list(
    _take(P.pretrain_iterator(cfg, batch_size=32, process_index=0, process_count=1, seed=3), 3)
  )
  c = next(P.pretrain_iterator(cfg, batch_size=32, process_index=0, process_count=1, seed=4))
  for x, y in zip(a, b):
    for k in x:
      np.testing.assert_array_equal(x[k], y[k])
  assert not np.array_equal(a[0]["view1"], c["view1"])


def test_epochs_are_reshuffled_and_processes_augment_differently():
  cfg = _cfg(aug=_identity_aug(32), image_size=32, synthetic_train_size=64)
  it = P.pretrain_iterator(cfg, batch_size=64, process_index=0, process_count=1)
  e0, e1 = next(it), next(it)
  refs = list(C.synthetic_arrays("train", 64)[0].astype(np.float32) / 255.0)
  o0, o1 = _match(e0["view1"], refs), _match(e1["view1"], refs)
  assert sorted(o0) == sorted(o1) == list(range(64))
  assert not np.array_equal(o0, o1)


def test_batch_larger_than_shard_is_a_clear_error():
  with pytest.raises(ValueError, match="batch_size"):
    P.pretrain_iterator(_cfg(), batch_size=512, process_index=0, process_count=2)


def test_view_size_must_match_image_size():
  with pytest.raises(
    ValueError, match="config.aug.image_size=16 differs from config.image_size=32"
  ):
    P.pretrain_iterator(
      _cfg(aug=views.view(16), image_size=32),
      batch_size=8,
      process_index=0,
      process_count=1,
    )


# -- evaluation ------------------------------------------------------------------------------------


@pytest.mark.parametrize("dataset,size", [("synthetic", 32), ("tiny_gray", 16), ("tiny_var", 16)])
def test_eval_covers_split_exactly_once_with_mask(tiny_dir, dataset, size):
  cfg = _cfg(dataset, tiny_dir, image_size=size)
  n = C.num_examples(cfg, "test")
  images, labels = _source(cfg, "test")
  assert len(images) == n
  per_process = [
    list(P.eval_iterator(cfg, "test", batch_size=8, process_index=k, process_count=2))
    for k in range(2)
  ]
  assert len(per_process[0]) == len(per_process[1]) == -(-((n + 1) // 2) // 8)
  seen = []
  for batches in per_process:
    for b in batches:
      assert b["image"].shape == (8, size, size, 3) and b["image"].dtype == np.float32
      assert (
        b["label"].dtype == np.int32
        and b["mask"].dtype == np.float32
        and b["index"].dtype == np.int64
      )
      real = b["mask"] == 1
      assert (b["image"][~real] == 0).all()
      for i, im, lb in zip(b["index"][real], b["image"][real], b["label"][real]):
        src = tf.image.convert_image_dtype(tf.constant(images[i]), tf.float32)
        if src.shape[-1] == 1:
          src = tf.tile(src, [1, 1, 3])
        np.testing.assert_allclose(im, A.eval_view(src, size).numpy(), atol=1e-5)
        assert lb == labels[i]
      seen.extend(b["index"][real].tolist())
  assert sorted(seen) == list(range(n))


# -- data_dir and errors ---------------------------------------------------------------------------


def test_resolve_data_dir(monkeypatch):
  assert C.resolve_data_dir("/x/y") == "/x/y"
  monkeypatch.setenv("TFDS_DATA_DIR", "/from/env")
  assert C.resolve_data_dir(None) == "/from/env"
  monkeypatch.delenv("TFDS_DATA_DIR")
  repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(C.__file__))))
  shared = os.path.join(os.path.dirname(repo), "shared", "tensorflow_datasets")
  assert C.resolve_data_dir(None) == (shared if os.path.isdir(shared) else None)


def test_missing_dataset_is_a_fast_clear_error(tmp_path):
  start = time.time()
  with pytest.raises(ValueError) as err:
    C.dataset_info("cifar100", str(tmp_path))
  msg = str(err.value)
  assert "cifar100" in msg and str(tmp_path) in msg and "tfds build cifar100" in msg
  assert "TFDS_DATA_DIR" in msg and "data_dir" in msg
  with pytest.raises(ValueError, match="cifar100"):
    P.pretrain_iterator(
      _cfg("cifar100", str(tmp_path)), batch_size=8, process_index=0, process_count=1
    )
  with pytest.raises(ValueError, match="no_such_dataset_xyz"):
    C.num_examples(_cfg("no_such_dataset_xyz", str(tmp_path)), "train")
  assert time.time() - start < 10


# -- real CIFAR-10 ---------------------------------------------------------------------------------


def _cifar_dir():
  d = C.resolve_data_dir(None)
  return d if d and os.path.isdir(os.path.join(d, "cifar10")) else None


@pytest.mark.skipif(_cifar_dir() is None, reason="CIFAR-10 not prepared in the TFDS data_dir")
def test_real_cifar10():
  cfg = _cfg("cifar10", None, image_size=32, train_split="train[:512]")
  num_classes, shape, splits = C.dataset_info("cifar10", None)
  assert (num_classes, shape, splits["train"], splits["test"]) == (10, (32, 32, 3), 50000, 10000)
  batch = next(P.pretrain_iterator(cfg, batch_size=64, process_index=1, process_count=2))
  assert batch["view1"].shape == (64, 32, 32, 3) and batch["label"].max() < 10
  seen = []
  for k in range(2):
    for b in P.eval_iterator(cfg, "test[:300]", batch_size=64, process_index=k, process_count=2):
      seen.extend(b["index"][b["mask"] == 1].tolist())
  assert sorted(seen) == list(range(300))
