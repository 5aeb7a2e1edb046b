"""Image-text input pipeline: every caption source pairs each image with ITS captions, streams are
deterministic and resume exactly, shards partition a split, and bad settings name the field."""

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from contrastive_jax.data import captions, image_text, image_text_eval, source
from contrastive_jax.data import tokenizer as tokenizer_lib
from tests import clip_helpers

COLOURS = {"red": (255, 0, 0), "green": (0, 255, 0), "blue": (0, 0, 255)}


def _decode(tokens) -> list[str]:
  tok = tokenizer_lib.get_tokenizer()
  return [tok.decode(row) for row in tokens]


def _canon(texts) -> list[str]:
  """Texts as they come back from tokens (BPE decoding spaces out punctuation)."""
  return _decode(tokenizer_lib.get_tokenizer()(list(texts), 16))


def _take(cfg, n, start_step=0, batch_size=8, **where):
  it = image_text.pretrain_iterator(cfg, batch_size=batch_size, start_step=start_step, **where)
  return [next(it) for _ in range(n)]


def _equal(a, b):
  assert a.keys() == b.keys()
  for k in a:
    np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def _png(path, rgb, size=16):
  tf.io.write_file(str(path), tf.io.encode_png(np.full((size, size, 3), rgb, np.uint8)))


# ----------------------------------------------------------------------------- synthetic


def test_synthetic_stream_is_deterministic_and_resumes_exactly():
  cfg = clip_helpers.tiny_config("clip")
  first = _take(cfg, 3, process_index=0, process_count=1)
  again = _take(cfg, 3, process_index=0, process_count=1)
  resumed = _take(cfg, 1, start_step=2, process_index=0, process_count=1)
  for a, b in zip(first, again):
    _equal(a, b)
  _equal(first[2], resumed[0])
  b = first[0]
  assert b["image"].shape == (8, 16, 16, 3) and b["tokens"].shape == (8, 16)
  assert b["image"].dtype == np.float32 and b["tokens"].dtype == np.int32
  assert set(_decode(np.concatenate([f["tokens"] for f in first]))) <= set(
    _canon(captions.synthetic_captions())
  )


def test_pairs_shard_the_split_once_and_keep_first_captions():
  cfg = clip_helpers.tiny_config("clip")
  parts = [
    list(image_text_eval.pairs_iterator(cfg, "test[:50]", batch_size=16, **w))
    for w in (dict(process_index=0, process_count=2), dict(process_index=1, process_count=2))
  ]
  assert len(parts[0]) == len(parts[1]) == 2  # 25 rows each, padded to equal batch counts
  index = np.concatenate([b["index"][b["mask"] > 0] for p in parts for b in p])
  np.testing.assert_array_equal(np.sort(index), np.arange(50))
  images, attrs, _ = captions.synthetic("test", 256, 16)
  ids = captions.synthetic_caption_ids(attrs)[:, 0]  # the first paraphrase
  rows = [b for p in parts for b in p]
  real = np.concatenate([b["mask"] for b in rows]) > 0
  index = np.concatenate([b["index"] for b in rows])[real]
  texts = _decode(np.concatenate([b["tokens"] for b in rows])[real])
  assert texts == _canon(captions.synthetic_captions()[i] for i in ids[index])
  # Equal captions share an id, different captions never do.
  cid = np.concatenate([b["caption_id"] for b in rows])[real]
  same_text = np.asarray(texts)[:, None] == np.asarray(texts)[None, :]
  np.testing.assert_array_equal(cid[:, None] == cid[None, :], same_text)
  assert same_text.sum() > len(texts)  # the check saw repeated captions


def test_datasource_serves_image_text_batches():
  cfg = clip_helpers.tiny_config("clip")
  data = source.DataSource(cfg)
  assert (data.num_classes, data.train_size) == (len(captions.SHAPES), 1024)
  assert set(next(data.train_batches())) == {"image", "tokens"}


# ----------------------------------------------------------------------------- templates, folder


def test_templates_caption_each_image_with_its_class(tmp_path):
  for name, rgb in COLOURS.items():
    for split in ("train", "test"):
      (tmp_path / split / name).mkdir(parents=True)
      for k in range(4):
        _png(tmp_path / split / name / f"{k}.png", rgb)
  cfg = clip_helpers.tiny_config("clip")
  cfg.update(dataset=f"folder:{tmp_path}")
  cfg.text.update(source="templates", templates="cifar10")
  temps = captions.templates("cifar10")
  seen = set()
  for b in _take(cfg, 3, batch_size=6, process_index=0, process_count=1):
    for image, text in zip(b["image"], _decode(b["tokens"])):
      colour = list(COLOURS)[int(np.argmax(image.mean(axis=(0, 1))))]
      assert text in set(_canon(t.format(colour) for t in temps)), (colour, text)
      seen.add(text)
  assert len(seen) > 3  # templates are drawn per element, not fixed
  pairs = next(image_text_eval.pairs_iterator(cfg, "test", batch_size=16))
  real = pairs["mask"] > 0
  texts = _decode(pairs["tokens"][real])
  colours = [list(COLOURS)[int(np.argmax(x.mean(axis=(0, 1))))] for x in pairs["image"][real]]
  assert texts == _canon(temps[0].format(c) for c in colours)


def test_folder_of_captions(tmp_path, caplog):
  for name, rgb in COLOURS.items():
    _png(tmp_path / f"{name}.png", rgb)
    (tmp_path / f"{name}.txt").write_text(f"a {name} image\n\n  the {name} one  \n")
  _png(tmp_path / "orphan.png", (9, 9, 9))  # no caption file: left out, and reported
  cfg = clip_helpers.tiny_config("clip")
  cfg.update(dataset=str(tmp_path))
  cfg.text.source = "folder"
  assert image_text.info(cfg) == (0, 3)
  assert "orphan.png" in caplog.text
  seen = set()
  for b in _take(cfg, 4, batch_size=3, process_index=0, process_count=1):
    for image, text in zip(b["image"], _decode(b["tokens"])):
      colour = list(COLOURS)[int(np.argmax(image.mean(axis=(0, 1))))]
      assert text in (f"a {colour} image", f"the {colour} one")
      seen.add(text)
  assert len(seen) == 6  # both lines of every file get drawn


def test_bad_settings_name_the_field(tmp_path):
  cfg = clip_helpers.tiny_config("clip")
  cfg.text.source = "captions"
  with pytest.raises(ValueError, match="config.text.source='captions'"):
    image_text.info(cfg)
  cfg = clip_helpers.tiny_config("clip", dataset="cifar10")
  with pytest.raises(ValueError, match="synthetic_captions"):
    image_text.info(cfg)
  cfg = clip_helpers.tiny_config("clip", dataset=f"folder:{tmp_path}")
  cfg.text.source = "folder"
  with pytest.raises(ValueError, match="plain directory"):
    image_text.info(cfg)
  cfg.dataset = str(tmp_path)
  with pytest.raises(ValueError, match="no image with a caption file"):
    image_text.info(cfg)
  # An unprepared zero-shot dataset fails when the data are opened, not at the first evaluation.
  cfg = clip_helpers.tiny_config("clip", data_dir=str(tmp_path / "no_tfds"))
  cfg.zero_shot.dataset = "cifar100"
  with pytest.raises(ValueError, match=r"config.zero_shot.dataset='cifar100'.*not prepared"):
    source.DataSource(cfg)


# ----------------------------------------------------------------------------- a TFDS text feature


class TinyCaptions(tfds.core.GeneratorBasedBuilder):
  """Images of one grey level i * 10 with captions 'photo i' and 'picture i' (coco_captions-like)."""

  VERSION = tfds.core.Version("1.0.0")

  def _info(self):
    features = tfds.features.FeaturesDict(
      {
        "image": tfds.features.Image(shape=(None, None, 3)),
        "captions": tfds.features.Sequence({"text": tfds.features.Text()}),
      }
    )
    return tfds.core.DatasetInfo(builder=self, features=features)

  def _split_generators(self, dl_manager):
    del dl_manager
    return {"train": self._generate_examples(0, 20), "test": self._generate_examples(20, 28)}

  def _generate_examples(self, start, stop):
    for i in range(start, stop):
      image = np.full((12 + i % 5, 16, 3), i * 8, np.uint8)  # varying sizes: the streaming reader
      yield i, {"image": image, "captions": {"text": [f"photo {i}", f"picture {i}"]}}


def test_tfds_text_feature_stream(tmp_path):
  TinyCaptions(data_dir=str(tmp_path)).download_and_prepare()
  cfg = clip_helpers.tiny_config("clip", dataset="tiny_captions")
  cfg.update(data_dir=str(tmp_path), shuffle_buffer=8)
  cfg.text.update(source="tfds", image_feature="image", text_feature="captions/text")
  assert image_text.info(cfg) == (0, 20)
  where = dict(process_index=0, process_count=1)
  first = _take(cfg, 5, batch_size=8, **where)
  _equal(_take(cfg, 1, start_step=4, batch_size=8, **where)[0], first[4])  # exact resumption
  seen = set()
  for b in first:
    for image, text in zip(b["image"], _decode(b["tokens"])):
      i = int(round(image.mean() * 255 / 8))
      assert text in _canon([f"photo {i}", f"picture {i}"]), (i, text)
      seen.add(text)
  assert any(t.startswith("photo") for t in seen) and any(t.startswith("picture") for t in seen)
  pairs = list(image_text_eval.pairs_iterator(cfg, "test", batch_size=8, **where))
  real = np.concatenate([p["mask"] for p in pairs]) > 0
  ids = np.concatenate([p["caption_id"] for p in pairs])[real]
  np.testing.assert_array_equal(ids, np.arange(8))  # each image its own caption group
  # Each image with its first caption (in TFDS's record order, not the generator's).
  grey = np.concatenate([p["image"] for p in pairs])[real].mean(axis=(1, 2, 3)) * 255 / 8
  assert _decode(np.concatenate([p["tokens"] for p in pairs])[real]) == _canon(
    f"photo {int(round(g))}" for g in grey
  )
  assert sorted(int(round(g)) for g in grey) == list(range(20, 28))
  cfg.text.text_feature = "captions/caption"
  with pytest.raises(ValueError, match="config.text.text_feature='captions/caption'"):
    image_text.info(cfg)
