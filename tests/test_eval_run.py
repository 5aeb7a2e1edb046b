"""protocols.evaluate end to end on a tiny pre-training workdir: linear eval (features and augmented), fine-tuning,
figures, results.json keys, subset file re-use, frozen encoder, random init.

The module fixture pre-trains once (train.train_and_evaluate, 4 steps); without the slow tests this
file takes about 2 minutes on 2 shared CPU cores, with them about 5.
"""

import importlib.util
import json
import os

import jax
import numpy as np
import pytest

from contrastive_jax import pretrained, sharding, train
from contrastive_jax.data import eval_views, subsets
from contrastive_jax.protocols import evaluate, finetune, linear_eval
from tests import helpers

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _load_config(name, preset="cpu"):
  spec = importlib.util.spec_from_file_location(
    f"cfg_{name}", os.path.join(_ROOT, "configs", f"{name}.py")
  )
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(preset)


@pytest.fixture(scope="module")
def pretrain_dir(tmp_path_factory):
  """A tiny SimCLR run on the synthetic set (4 steps, nano ResNet, 16 px)."""
  w = str(tmp_path_factory.mktemp("pretrain"))
  cfg = helpers.tiny_config("simclr", synthetic_train_size=256, synthetic_test_size=64)
  train.train_and_evaluate(cfg, w)
  return w


def _eval_config(name, pretrain_dir, **overrides):
  c = _load_config(name)
  c.pretrained_workdir = pretrain_dir
  c.eval_batch_size = 64
  c.knn_ks = (5, 20)
  c.linear.update(lrs=(0.1, 1.0), weight_decays=(0.0,), epochs=3, batch_size=64)
  c.finetune.update(batch_size=32, steps=3, log_every_steps=1)
  for k, v in overrides.items():
    target = c
    *path, last = k.split(".")
    for p in path:
      target = target[p]
    target[last] = v
  return c


@pytest.mark.slow
def test_load_restores_checkpoint(pretrain_dir):
  loaded = pretrained.load(pretrain_dir)
  assert loaded.step == 4 and not loaded.random_init
  rand = pretrained.load(pretrain_dir, random_init=True)
  assert rand.step == 0 and rand.random_init
  a = pretrained.encoder_fingerprint(loaded.method, loaded.state)
  b = pretrained.encoder_fingerprint(rand.method, rand.state)
  assert a.shape == b.shape and not np.allclose(a, b)
  # The fallback (checkpoint's own tree metadata, for an optimiser state of another structure)
  # agrees.
  ckpt = pretrained.ReadOnlyCheckpoints(os.path.join(pretrain_dir, "checkpoints"))
  raw = ckpt.restore_raw(ckpt.all_steps()[-1], sharding.make_mesh())
  ckpt.close()
  np.testing.assert_array_equal(
    pretrained.encoder_fingerprint(
      loaded.method,
      pretrained.TrainState(
        step=0, params=raw["params"], batch_stats=raw["batch_stats"], opt_state={}, extras={}, rng=0
      ),
    ),
    a,
  )


@pytest.mark.slow
def test_load_never_writes_to_pretrain_workdir(pretrain_dir, tmp_path):
  """Evaluating a workdir that is still training must not touch it: an in-progress save (orbax tmp dir) and an
  unreadable newest step stay where they are, and the newest readable step is used."""
  import shutil  # pylint: disable=g-import-not-at-top

  w = str(tmp_path / "copy")
  shutil.copytree(pretrain_dir, w)
  ck = os.path.join(w, "checkpoints")
  steps = sorted(int(d) for d in os.listdir(ck) if d.isdigit())
  shutil.copytree(os.path.join(ck, str(steps[-1])), os.path.join(ck, "6"))  # a newer step ...
  for root, _, files in os.walk(
    os.path.join(ck, "6", "state")
  ):  # ... whose array data is unreadable
    for f in files:
      if not f.endswith(("json", "METADATA")) and "metadata" not in f.lower():
        with open(os.path.join(root, f), "wb") as fh:
          fh.write(b"garbage")
  tmp = os.path.join(ck, "8.orbax-checkpoint-tmp-123")
  os.makedirs(os.path.join(tmp, "state"))
  before = sorted(os.listdir(ck))
  loaded = pretrained.load(w)
  assert loaded.step == steps[-1]
  assert sorted(os.listdir(ck)) == before and os.path.isdir(tmp)
  assert not os.path.exists(ck + "_corrupt")


def test_linear_eval_features_end_to_end(pretrain_dir, tmp_path):
  w2 = str(tmp_path / "lin")
  cfg = _eval_config("linear_eval", pretrain_dir, export_split="test")
  res = evaluate.evaluate(cfg, w2)
  with open(os.path.join(w2, "results.json")) as f:
    saved = json.load(f)
  for key in (
    "knn_top1",
    "knn_top1_k5",
    "knn_top1_k20",
    "linear_top1",
    "linear_top5",
    "retrieval_recall_at_1",
    "retrieval_recall_at_5",
    "retrieval_recall_at_10",
    "retrieval_map_at_r",
    "knn_time_s",
    "linear_time_s",
    "retrieval_time_s",
    "features_time_s",
  ):
    assert key in saved, key
    assert key in res
  # knn_top1 follows the pre-training monitor's k (tiny_config: 20) when it is among knn_ks.
  assert saved["knn_top1"] == saved["knn_top1_k20"]
  for k in ("linear_top1", "linear_top5", "knn_top1"):
    assert 0.0 <= saved[k] <= 1.0
  assert saved["linear_top5"] >= saved["linear_top1"]
  for png in (
    "embedding_pca.png",
    "retrieval_grid.png",
    "training_curves.png",
    "linear_confusion.png",
  ):
    path = os.path.join(w2, png)
    assert os.path.getsize(path) > 5_000, png
  emb = np.load(os.path.join(w2, "embeddings_test.npz"))
  assert emb["features"].shape[0] == 64 and sorted(emb["ids"].tolist()) == list(range(64))
  assert os.path.getsize(os.path.join(w2, "metrics.jsonl")) > 0


def test_linear_augmented_keeps_encoder_frozen(pretrain_dir):
  """'augmented' mode (1 epoch): heads train on crop+flip views; the encoder's params/BN stats never change."""
  cfg = _eval_config(
    "linear_eval", pretrain_dir, **{"linear.mode": "augmented", "linear.epochs": 1}
  )
  mesh = sharding.make_mesh()
  loaded = pretrained.load(pretrain_dir, mesh=mesh)
  before = pretrained.encoder_fingerprint(loaded.method, loaded.state)
  all_before = [
    np.asarray(x) for x in jax.tree.leaves((loaded.state.params, loaded.state.batch_stats))
  ]
  data_cfg = eval_views.data_config(cfg, loaded.config)
  tx, ty, tid = linear_eval.split_features(loaded, data_cfg, "train", mesh, 64)
  probe = linear_eval.linear_augmented(
    cfg, loaded, data_cfg, 10, mesh, tid[:200], tx[:200], tx[200:], ty[200:]
  )
  top1, top5 = probe.evaluate(tx[200:], ty[200:])
  assert 0.0 <= top1 <= top5 <= 1.0 and len(probe.grid) == 2
  assert (
    probe.params["kernel"].shape == (tx.shape[1], 10) and np.abs(probe.params["kernel"]).sum() > 0
  )
  np.testing.assert_array_equal(before, pretrained.encoder_fingerprint(loaded.method, loaded.state))
  after = [np.asarray(x) for x in jax.tree.leaves((loaded.state.params, loaded.state.batch_stats))]
  for a, b in zip(all_before, after):
    np.testing.assert_array_equal(a, b)
  # Nearest neighbours of given images: a training image finds itself first.
  idx, sims = linear_eval.nearest_neighbour_images(
    loaded, eval_views.images_at(data_cfg, "train", [3, 7]), tx, mesh, k=3
  )
  assert idx.shape == (2, 3) and idx[0, 0] == 3 and idx[1, 0] == 7 and sims[0, 0] > 0.999
  # And the restored checkpoint itself is unchanged.
  np.testing.assert_array_equal(
    before, pretrained.encoder_fingerprint(loaded.method, pretrained.load(pretrain_dir).state)
  )


@pytest.mark.slow
def test_linear_eval_augmented_end_to_end(pretrain_dir, tmp_path):
  w2 = str(tmp_path / "aug")
  cfg = _eval_config(
    "linear_eval",
    pretrain_dir,
    **{"linear.mode": "augmented", "linear.epochs": 1},
    retrieval=False,
    plots=False,
  )
  res = evaluate.evaluate(cfg, w2)
  assert res["linear_mode"] == "augmented" and 0.0 <= res["linear_top1"] <= 1.0


@pytest.mark.slow
def test_finetune_subset_written_and_reused(pretrain_dir, tmp_path):
  w2 = str(tmp_path / "ft")
  cfg = _eval_config("finetune", pretrain_dir, label_fraction=0.1)
  res = evaluate.evaluate(cfg, w2)
  subset = os.path.join(w2, "subset_10pct_seed0.txt")
  assert os.path.exists(subset)
  ids = np.loadtxt(subset, comments="#", dtype=np.int64)
  assert len(ids) == 30 and len(set(ids.tolist())) == 30  # 256 examples, 10 classes: 3 per class
  for key in ("finetune_10pct_top1", "finetune_10pct_top5", "finetune_10pct_time_s"):
    assert key in res
  assert 0.0 <= res["finetune_10pct_top1"] <= res["finetune_10pct_top5"] <= 1.0
  # A hand-edited subset file is what the next run uses (the run repeats exactly from the file).
  with open(subset, "w") as f:
    f.write("# edited\n" + "".join(f"{i}\n" for i in range(0, 64, 2)))
  images, labels, got = subsets.labelled_subset(
    eval_views.data_config(cfg, pretrained.load_config(pretrain_dir)), 0.1, 0, w2
  )
  np.testing.assert_array_equal(got, np.arange(0, 64, 2))
  assert images.shape[0] == labels.shape[0] == 32


@pytest.mark.slow
def test_finetune_changes_encoder_and_keeps_pretrained(pretrain_dir, tmp_path):
  """The fine-tune trains the encoder (and the first projection layer) starting from the restored weights."""
  cfg = _eval_config("finetune", pretrain_dir, **{"finetune.from_projection_layer": 1})
  mesh = sharding.make_mesh()
  loaded = pretrained.load(pretrain_dir, mesh=mesh)
  before = pretrained.encoder_fingerprint(loaded.method, loaded.state)
  method = finetune.create_method(loaded.config, 10, from_projection_layer=1)
  v = method.init(jax.random.PRNGKey(0), np.zeros((2, 16, 16, 3), np.float32))
  moved = finetune.transplant(
    v["params"], loaded.params, method=method, source_method=loaded.method
  )
  assert set(moved) == {"encoder", "projector", "head"}
  np.testing.assert_array_equal(
    np.asarray(moved["projector"]["dense0"]["kernel"]),
    np.asarray(loaded.params["projector"]["dense0"]["kernel"]),
  )
  res, state, method = finetune.finetune(
    cfg,
    loaded,
    eval_views.data_config(cfg, loaded.config),
    10,
    mesh,
    str(tmp_path),
    return_state=True,
  )
  assert res["finetune_10pct_steps"] == 3
  np.testing.assert_array_equal(
    before, pretrained.encoder_fingerprint(loaded.method, loaded.state)
  )  # source not donated
  tuned = pretrained.encoder_fingerprint(method, state)
  assert tuned.shape == before.shape and not np.allclose(tuned, before)  # the whole network trains
  assert np.abs(np.asarray(state.params["head"]["kernel"])).sum() > 0
  assert not np.allclose(
    np.asarray(state.params["projector"]["dense0"]["kernel"]),
    np.asarray(loaded.params["projector"]["dense0"]["kernel"]),
  )


@pytest.mark.slow
def test_random_init_linear_eval(pretrain_dir, tmp_path):
  w2 = str(tmp_path / "rand")
  # Also: a linear probe on half of the (non-held-out) training labels, class-balanced.
  cfg = _eval_config(
    "linear_eval", pretrain_dir, random_init=True, retrieval=False, plots=False, label_fraction=0.5
  )
  res = evaluate.evaluate(cfg, w2)
  assert res["random_init"] is True and res["pretrained_step"] == 0
  assert 0.0 <= res["linear_top1"] <= 1.0 and "knn_top1" in res


def test_config_errors(pretrain_dir, tmp_path):
  cfg = _eval_config(
    "linear_eval", pretrain_dir, **{"linear.mode": "bogus"}, retrieval=False, plots=False
  )
  with pytest.raises(ValueError, match="linear.mode"):
    evaluate.evaluate(cfg, str(tmp_path / "bad"))
  cfg = _eval_config("linear_eval", str(tmp_path))
  with pytest.raises(ValueError, match="config.json"):
    evaluate.evaluate(cfg, str(tmp_path / "bad2"))


def test_transplant_reads_paths_from_the_methods():
  """The pre-trained encoder and first projector layer are read where the source method declares
  them (encoder_path, projector_path) and put where the fine-tune method has them."""
  from contrastive_jax.methods import base  # pylint: disable=g-import-not-at-top

  def method(**paths):
    return base.Method(name="m", init=None, loss_fn=None, embed=None, **paths)

  source_method = method(encoder_path=("towers", "image"), projector_path=("towers", "proj"))
  source = {
    "towers": {
      "image": {"conv": np.ones((3, 2))},
      "proj": {"dense0": np.full((2, 4), 2.0), "out": np.zeros((4, 1))},
    },
    "probe": np.zeros(3),
  }
  fresh = {
    "encoder": {"conv": np.zeros((3, 2))},
    "projector": {"dense0": np.zeros((2, 4))},
    "head": np.zeros((4, 10)),
  }
  moved = finetune.transplant(fresh, source, method=method(), source_method=source_method)
  np.testing.assert_array_equal(moved["encoder"]["conv"], np.ones((3, 2)))
  assert set(moved["projector"]) == {"dense0"} and moved["projector"]["dense0"][0, 0] == 2.0
  assert moved["head"] is fresh["head"] and fresh["encoder"]["conv"].sum() == 0  # fresh untouched
  # An encoder-only fine-tune (no projector in its tree) and a tree without BN statistics.
  only_head = finetune.transplant({"head": 1}, source, method=method(), source_method=source_method)
  assert only_head == {"head": 1}
  with pytest.raises(ValueError, match="towers/image"):
    finetune.transplant(
      {"encoder": {"conv": np.zeros((5, 2))}}, source, method=method(), source_method=source_method
    )
