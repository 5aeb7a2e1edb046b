"""Folder datasets: one class map from the training split (saved in the workdir: checked in
test_resume_safety.py), eval splits that
lack a class keep the training indices, unknown classes are errors, dangling links are counted with
the undecodable files, and the streaming reader yields exactly the in-memory reader's stream."""

import logging
import os

import numpy as np
import pytest

from contrastive_jax.data import catalog, folder, pipeline, source
from tests import fault_config


def make_folder(root, splits: dict, per_class: int = 4, size=(20, 24)):
  """root/<split>/<class>/<i>.png for each split's classes; `splits` = {'': classes} for no split."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  rng = np.random.default_rng(0)
  for split, classes in splits.items():
    for c, cls in enumerate(classes):
      d = root / split / cls if split else root / cls
      os.makedirs(d, exist_ok=True)
      for i in range(per_class):
        img = rng.integers(0, 255, size=(size[0] + c, size[1], 3 if i % 2 else 1), dtype=np.uint8)
        (d / f"{i}.png").write_bytes(tf.io.encode_png(img).numpy())


def _config(root, **overrides):
  c = fault_config.get_config()
  c.dataset = f"folder:{root}"
  c.batch_size = 8
  for k, v in overrides.items():
    setattr(c, k, v)
  return c


def _eval_labels(config, split):
  batches = pipeline.eval_iterator(config, split, batch_size=16, process_index=0, process_count=1)
  return np.concatenate([b["label"][b["mask"] > 0] for b in batches])


def test_eval_split_without_a_class_keeps_the_training_indices(tmp_path):
  make_folder(tmp_path / "imgs", {"train": ("a", "b", "c"), "test": ("a", "c")}, per_class=2)
  config = _config(tmp_path / "imgs")
  data = source.DataSource(config)
  assert data.class_names == ["a", "b", "c"] and data.num_classes == 3
  np.testing.assert_array_equal(_eval_labels(config, "test"), [0, 0, 2, 2])  # c stays 2
  np.testing.assert_array_equal(_eval_labels(config, "train"), [0, 0, 1, 1, 2, 2])


def test_eval_class_unknown_to_training_is_an_error(tmp_path):
  make_folder(tmp_path / "imgs", {"train": ("a", "b"), "test": ("a", "z")}, per_class=2)
  config = _config(tmp_path / "imgs")
  with pytest.raises(
    ValueError, match=r"split 'test': class directory \['z'\] .* not in the train"
  ):
    _eval_labels(config, "test")


def test_dangling_links_are_counted_with_undecodable_files(tmp_path, caplog):
  make_folder(tmp_path / "imgs", {"": ("a", "b")}, per_class=3)
  os.symlink(tmp_path / "nowhere.png", tmp_path / "imgs" / "a" / "gone.png")
  (tmp_path / "imgs" / "b" / "notes.txt").write_text("not an image")
  with caplog.at_level(logging.WARNING):
    paths, labels, bad = folder.list_files(f"folder:{tmp_path / 'imgs'}", "train")
    folder.stream(f"folder:{tmp_path / 'imgs'}", "train")
  assert len(paths) == 6 and sorted(why for _, why in bad) == [
    "dangling link",
    "not a JPEG, PNG, GIF or BMP file",
  ]
  assert "skipped 2 of 8 files" in caplog.text and "gone.png (dangling link)" in caplog.text


def test_streaming_reader_equals_the_in_memory_reader(tmp_path):
  """The file-list reader (parallel decoding in tf.data) yields the in-memory reader's images, and
  feeds the pre-training stream (whose shuffle differs: a buffer instead of a permutation)."""
  make_folder(tmp_path / "imgs", {"": ("a", "b")}, per_class=8, size=(30, 21))
  mem = _config(tmp_path / "imgs", cache=True)
  stream = _config(tmp_path / "imgs", cache=False)
  assert catalog.reader(mem) == "memory" and catalog.reader(stream) == "streaming"
  a = list(pipeline.eval_iterator(mem, "train", batch_size=8, process_index=0, process_count=1))
  b = list(pipeline.eval_iterator(stream, "train", batch_size=8, process_index=0, process_count=1))
  for x, y in zip(a, b, strict=True):
    np.testing.assert_array_equal(x["image"], y["image"])
    np.testing.assert_array_equal(x["label"], y["label"])
  s = next(pipeline.pretrain_iterator(stream, batch_size=8, process_index=0, process_count=1))
  assert s["view1"].shape == (8, 16, 16, 3) and set(s["label"]) <= {0, 1}
