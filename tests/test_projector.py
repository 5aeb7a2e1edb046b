"""TensorBoard: figures as image summaries, and the embedding projector export, read back by
TensorBoard's own code (the projector plugin's HTTP handlers and config parser, the event reader)."""

import glob
import io
import json
import os
import sys

import numpy as np
import pytest
import tensorflow as tf
from google.protobuf import text_format
from PIL import Image
from tensorboard.plugins import base_plugin
from tensorboard.plugins.projector import projector_config_pb2, projector_plugin
from werkzeug.test import Client

from contrastive_jax import metrics as metrics_lib
from contrastive_jax.config_lib import evaluation
from contrastive_jax.protocols import evaluate
from contrastive_jax.report import plots, projector
from tests.pretrain_fixture import pretrain_dir  # noqa: F401  (fixture)


class _Plugin:
  """The projector plugin on a local logdir (no data provider: it reads the logdir itself, '.')."""

  def __init__(self, logdir):
    plugin = projector_plugin.ProjectorPlugin(
      base_plugin.TBContext(logdir=logdir, data_provider=None)
    )
    self.apps = plugin.get_plugin_apps()

  def get(self, route, **args):
    query = "&".join(f"{k}={v}" for k, v in args.items())
    resp = Client(self.apps[route]).get(f"{route}?{query}")
    assert resp.status_code == 200, (route, resp.get_data(as_text=True))
    return resp.get_data()


def _image_summaries(logdir) -> dict:
  """{tag: decoded uint8 image} of every image summary in logdir's event files."""
  out = {}
  for path in glob.glob(os.path.join(logdir, "events.out.tfevents.*")):
    for event in tf.compat.v1.train.summary_iterator(path):
      for v in event.summary.value:
        if v.metadata.plugin_data.plugin_name == "images":
          # TF2 image summaries: a string tensor [width, height, png bytes...].
          png = tf.make_ndarray(v.tensor)[2]
          out[v.tag] = tf.io.decode_png(png).numpy()
  return out


def test_projector_files_through_the_plugin(tmp_path):
  rng = np.random.default_rng(0)
  n, d, keep = 50, 7, 30
  x = rng.normal(size=(n, d)).astype(np.float32)
  y = rng.integers(0, 3, size=n)
  images = rng.uniform(size=(n, 12, 12, 3)).astype(np.float32)
  out = projector.write_projector(
    str(tmp_path),
    x,
    y,
    class_names=["cat", "dog", "ship"],
    images=images,
    ids=np.arange(100, 100 + n),
    tensor_name="test_features",
    max_points=keep,
    seed=1,
  )
  assert (out["points"], out["dim"], out["thumb"]) == (keep, d, 12)
  config = projector_config_pb2.ProjectorConfig()
  text_format.Parse(open(tmp_path / projector.CONFIG_FILE).read(), config)
  (emb,) = config.embeddings
  assert list(emb.tensor_shape) == [keep, d] and list(emb.sprite.single_image_dim) == [12, 12]

  plugin = _Plugin(str(tmp_path))
  assert json.loads(plugin.get("/runs")) == ["."]
  got = np.frombuffer(plugin.get("/tensor", run=".", name="test_features"), np.float32)
  meta = plugin.get("/metadata", run=".", name="test_features").decode().splitlines()
  assert meta[0] == "class\tlabel\tid" and len(meta) == keep + 1
  rows = [int(line.split("\t")[2]) - 100 for line in meta[1:]]  # the subset, in split order
  assert rows == sorted(rows) and len(set(rows)) == keep
  np.testing.assert_array_equal(got.reshape(keep, d), x[rows])  # %.9g round-trips float32
  assert [line.split("\t")[0] for line in meta[1:]] == [["cat", "dog", "ship"][y[r]] for r in rows]
  sprite = np.asarray(
    Image.open(io.BytesIO(plugin.get("/sprite_image", run=".", name="test_features")))
  )
  side = int(np.ceil(np.sqrt(keep)))
  assert sprite.shape == (side * 12, side * 12, 3)
  for i in (0, 7, keep - 1):  # thumbnail i sits at row-major cell i
    r, c = divmod(i, side)
    want = (images[rows[i]] * 255).round().astype(np.uint8)
    np.testing.assert_array_equal(sprite[r * 12 : (r + 1) * 12, c * 12 : (c + 1) * 12], want)


def test_sprite_shrinks_to_fit_the_projectors_limit(monkeypatch):
  monkeypatch.setattr(projector, "_MAX_SPRITE", 100)  # 8192 in TensorBoard: same rule, less memory
  images = np.zeros((30, 40, 40, 1), np.uint8)
  images[3] = 255
  s, thumb = projector.sprite(images)
  assert thumb == 16 and s.shape == (96, 96, 3)  # 6 x 6 cells of 16 px
  assert (s[0:16, 48:64] == 255).all() and (s[0:16, 32:48] == 0).all()  # grey -> RGB, cell 3


def test_metric_writer_images(tmp_path):
  png = plots.plot_confusion_matrix(
    [0, 1, 2, 1], [0, 1, 1, 1], ["a", "b", "c"], str(tmp_path / "cm.png")
  )
  writer = metrics_lib.MetricWriter(str(tmp_path / "w"))
  array = np.random.default_rng(0).integers(0, 255, size=(5, 6, 3), dtype=np.uint8)
  writer.write_images(3, {"figures/cm": png, "raw": array})
  writer.close()
  got = _image_summaries(str(tmp_path / "w" / "tensorboard"))
  want = np.asarray(Image.open(png).convert("RGB"))
  np.testing.assert_array_equal(got["figures/cm"], want)
  np.testing.assert_array_equal(got["raw"], array)


def test_linear_eval_writes_figures_and_projector(pretrain_dir, tmp_path):  # noqa: F811
  c = evaluation.eval_config("linear_eval")
  c.update(pretrained_workdir=pretrain_dir, eval_batch_size=64, knn_ks=(5,), projector_points=32)
  c.update(export_split="test", retrieval=False, embedding_maps=("pca",))
  c.linear.update(lrs=(0.1,), weight_decays=(0.0,), epochs=1, batch_size=64)
  w2 = str(tmp_path / "lin")
  res = evaluate.evaluate(c, w2)
  tb = os.path.join(w2, "tensorboard")
  images = _image_summaries(tb)
  for name in ("embedding_pca", "retrieval_grid", "training_curves", "linear_confusion"):
    want = np.asarray(Image.open(os.path.join(w2, f"{name}.png")).convert("RGB"))
    np.testing.assert_array_equal(images[f"figures/{name}"], want)
  assert res["projector_points"] == 32 and len(res["tensorboard_images"]) == 4

  plugin = _Plugin(tb)
  got = np.frombuffer(plugin.get("/tensor", run=".", name="test_features"), np.float32)
  emb = np.load(os.path.join(w2, "embeddings_test.npz"))
  meta = plugin.get("/metadata", run=".", name="test_features").decode().splitlines()[1:]
  ids = [int(line.split("\t")[2]) for line in meta]
  np.testing.assert_array_equal(got.reshape(32, -1), emb["features"][ids])
  assert [int(line.split("\t")[1]) for line in meta] == emb["labels"][ids].tolist()


def test_bad_map_or_points_fail_before_features(pretrain_dir, tmp_path, monkeypatch):  # noqa: F811
  c = evaluation.eval_config("linear_eval")
  c.update(pretrained_workdir=pretrain_dir, embedding_maps=("pca", "mds"))
  with pytest.raises(ValueError, match=r"config.embedding_maps=.*'mds' is not a map"):
    evaluate.evaluate(c, str(tmp_path / "a"))
  c.update(embedding_maps=("pca",), projector_points=-1)
  with pytest.raises(ValueError, match=r"config.projector_points=-1"):
    evaluate.evaluate(c, str(tmp_path / "b"))
  monkeypatch.setitem(sys.modules, "umap", None)  # as if umap-learn were not installed
  c.update(embedding_maps=("pca", "umap"), projector_points=0)
  with pytest.raises(ImportError, match=r"config.embedding_maps contains 'umap'.*'umap-learn'"):
    evaluate.evaluate(c, str(tmp_path / "c"))
  assert not os.path.exists(tmp_path / "c" / "results.json")
