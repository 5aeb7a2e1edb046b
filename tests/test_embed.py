"""mode=embed on a tiny generated folder: nested directories, no classes, bad files skipped and counted.

Features are checked against method.embed on the files' pixels (decoded whole, not by the folder
reader's resize + crop, nor in its chunks),
and the neighbours against a float64 NumPy cosine ranking.
"""

import csv
import glob
import json
import os

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from contrastive_jax import pretrained
from contrastive_jax.data import folder
from contrastive_jax.protocols import embed
from tests import helpers
from tests.pretrain_fixture import pretrain_dir  # noqa: F401  (fixture)

K = 3


def _make_folder(root) -> dict:
  """16 px images (the run's image size, so decoding needs no resize) at three depths, and junk."""
  rng = np.random.default_rng(0)
  good = {}
  for rel in ("a.png", "sub/b.png", "sub/c.jpg", "sub/deep/er/d.png", "sub/deep/e.bmp", "f.png"):
    path = os.path.join(root, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    pixels = rng.integers(0, 256, size=(16, 16, 3), dtype=np.uint8)
    fmt = {"png": "PNG", "jpg": "JPEG", "bmp": "BMP"}[rel.rsplit(".", 1)[1]]
    Image.fromarray(pixels).save(path, format=fmt, quality=95)
    # What the file holds (JPEG is lossy), by TF's decoder as the pipeline's (PIL's IDCT differs).
    good[rel] = tf.io.decode_image(tf.io.read_file(path), channels=3).numpy()
  # An exact duplicate: its own row must still be dropped from its neighbours.
  with open(os.path.join(root, "a.png"), "rb") as f:
    data = f.read()
  with open(os.path.join(root, "sub", "a_copy.png"), "wb") as f:
    f.write(data)
  good["sub/a_copy.png"] = good["a.png"]
  with open(os.path.join(root, "sub", "corrupt.jpg"), "wb") as f:
    f.write(b"\xff\xd8\xff\xe0" + b"not really a jpeg" * 10)  # JPEG signature, undecodable
  with open(os.path.join(root, "notes.txt"), "w") as f:
    f.write("not an image")
  os.symlink(os.path.join(root, "gone.png"), os.path.join(root, "sub", "dangling.png"))
  os.makedirs(os.path.join(root, ".cache"))
  Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(os.path.join(root, ".cache", "x.png"))
  return good


def _config(src, dataset, **embed_fields):
  c = helpers.tiny_config("simclr", mode="embed", pretrained_workdir=src, dataset=dataset)
  c.embed.update(k=K, batch_size=16, grid_queries=3, grid_neighbours=2, **embed_fields)
  return c


@pytest.fixture(scope="module")
def embedded(pretrain_dir, tmp_path_factory):  # noqa: F811
  root = str(tmp_path_factory.mktemp("images"))
  good = _make_folder(root)
  out = str(tmp_path_factory.mktemp("embed"))
  res = embed.run(_config(pretrain_dir, f"folder:{root}"), out)
  return root, good, out, res


def test_results_count_the_skipped_files(embedded):
  _, good, out, res = embedded
  saved = json.load(open(os.path.join(out, "results.json")))
  assert saved["num_images"] == len(good) == res["num_images"]
  assert saved["num_skipped"] == 3
  reasons = {os.path.basename(p): why for p, why in saved["skipped"]}
  assert reasons["dangling.png"] == "dangling link"
  assert "JPEG, PNG" in reasons["notes.txt"]
  assert "corrupt.jpg" in reasons and "function_node" not in reasons["corrupt.jpg"]
  assert saved["neighbours_k"] == K and saved["feature_dim"] > 0


def test_features_and_neighbours_match_references(embedded, pretrain_dir):  # noqa: F811
  _, good, out, _ = embedded
  npz = np.load(os.path.join(out, "embeddings.npz"))
  ids = npz["ids"].tolist()
  assert ids == sorted(good) and (npz["labels"] == -1).all()  # relative paths, nested ones too
  loaded = pretrained.load(pretrain_dir)
  x = np.stack([good[i] for i in ids]).astype(np.float32) / 255.0
  ref = np.asarray(loaded.method.embed(loaded.state, x), np.float64)
  np.testing.assert_allclose(npz["features"], ref, rtol=1e-5, atol=1e-5)

  unit = ref / np.linalg.norm(ref, axis=1, keepdims=True)
  sims = unit @ unit.T
  np.fill_diagonal(sims, -np.inf)  # never oneself, even next to an exact duplicate
  for q in range(len(ids)):
    got = npz["neighbours"][q]
    assert q not in got
    np.testing.assert_allclose(npz["similarities"][q], sims[q, got], atol=1e-5)
    np.testing.assert_allclose(npz["similarities"][q], np.sort(sims[q])[::-1][:K], atol=1e-5)
  dup, orig = ids.index("sub/a_copy.png"), ids.index("a.png")
  assert npz["neighbours"][dup][0] == orig and npz["similarities"][dup][0] == pytest.approx(1.0)

  rows = list(csv.DictReader(open(os.path.join(out, "neighbours.csv"))))
  assert len(rows) == len(ids) * K
  first = [r for r in rows if r["query"] == "sub/a_copy.png" and r["rank"] == "1"][0]
  assert first["neighbour"] == "a.png"
  table = json.load(open(os.path.join(out, "neighbours.json")))
  assert [n for n, _ in table["a.png"]] == [ids[j] for j in npz["neighbours"][orig]]


def test_grid_png_also_in_tensorboard(embedded):
  _, _, out, res = embedded
  assert os.path.getsize(os.path.join(out, "retrieval_grid.png")) > 5_000
  assert "retrieval_grid.png" in res["embed_files"]
  tags = set()
  for path in glob.glob(os.path.join(out, "tensorboard", "events.out.tfevents.*")):
    for event in tf.compat.v1.train.summary_iterator(path):
      for v in event.summary.value:
        if v.metadata.plugin_data.plugin_name == "images":
          tags.add(v.tag)
  assert "figures/retrieval_grid" in tags


def test_list_tree_needs_no_classes(tmp_path):
  good = _make_folder(str(tmp_path))
  paths, bad = folder.list_tree(f"folder:{tmp_path}")
  assert sorted(os.path.relpath(p, tmp_path) for p in paths) == sorted(
    set(good) | {"sub/corrupt.jpg"}  # its signature passes; decoding it fails later
  )
  assert sorted(os.path.basename(p) for p, _ in bad) == ["dangling.png", "notes.txt"]
  images, kept, failed = folder.decode_paths(paths, 16)
  assert len(kept) == len(good) and [os.path.basename(p) for p, _ in failed] == ["corrupt.jpg"]
  assert images.shape == (len(good), 16, 16, 3) and images.dtype == np.uint8


def test_errors(pretrain_dir, tmp_path):  # noqa: F811
  with pytest.raises(ValueError, match="folder:/path/to/images"):
    embed.run(_config(pretrain_dir, "cifar10"), str(tmp_path / "a"))
  junk = tmp_path / "junk"
  junk.mkdir()
  (junk / "x.txt").write_text("no")
  with pytest.raises(ValueError, match=r"no image could be decoded \(1 file"):
    embed.run(_config(pretrain_dir, f"folder:{junk}"), str(tmp_path / "b"))
  with pytest.raises(ValueError, match="is not a directory"):
    embed.run(_config(pretrain_dir, f"folder:{tmp_path / 'nope'}"), str(tmp_path / "c"))
