"""Evaluation workdirs on gs:// against the local GCS emulator: a linear evaluation and a
fine-tuning run read a pre-training run from the bucket and write every file into the bucket
(config.json, results.json, metrics.jsonl, TensorBoard events, feature caches, the embeddings
export, figures, the labelled-subset file, fine-tuning checkpoints), with the numbers of the same
evaluation done on local directories. In process: the emulator variables are set by the fixture."""

import json
import os

import pytest
from etils import epath

from tests import gcs_emulator
from tests.pretrain_fixture import tiny_run
from tests.test_eval_run import _eval_config
from tests.test_gcs_workdir import gcs  # noqa: F401  (the emulator fixture)

BUCKET = f"gs://{gcs_emulator.BUCKET}"


@pytest.mark.slow
def test_linear_eval_and_finetune_between_gs_workdirs_equal_local_ones(gcs, tmp_path, monkeypatch):  # noqa: F811
  from contrastive_jax.protocols import evaluate  # pylint: disable=g-import-not-at-top

  monkeypatch.chdir(tmp_path)  # a stray local 'gs:' directory would land here
  local_src = tiny_run(str(tmp_path / "pretrain"))
  gs_src = tiny_run(f"{BUCKET}/pretrain")

  def linear(src, dst):
    cfg = _eval_config("linear_eval", src, plots=True, retrieval=True, export_split="test")
    return evaluate.evaluate(cfg, dst)

  got = linear(gs_src, f"{BUCKET}/lin")
  want = linear(local_src, str(tmp_path / "lin"))
  for k in (
    "knn_top1",
    "linear_top1",
    "linear_val_top1",
    "linear_best_lr",
    "retrieval_recall_at_1",
  ):
    assert got[k] == want[k], (k, got[k], want[k])
  lin = epath.Path(f"{BUCKET}/lin")
  for name in (
    "config.json",
    "results.json",
    "metrics.jsonl",
    "linear_grid.json",
    "features_train.npz",
    "features_test.npz",
    "embeddings_test.npz",
    "retrieval_grid.png",
    "linear_confusion.png",
    "embedding_pca.png",
    "training_curves.png",  # read from the gs:// pre-training run's metrics.jsonl
  ):
    assert (lin / name).exists(), name
  assert any((lin / "tensorboard").iterdir())
  assert (lin / "retrieval_grid.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
  assert json.loads((lin / "results.json").read_text())["pretrained_workdir"] == gs_src

  cfg = _eval_config("finetune", gs_src, label_fraction=0.5)
  res = evaluate.evaluate(cfg, f"{BUCKET}/ft")
  ft = epath.Path(f"{BUCKET}/ft")
  assert "finetune_50pct_top1" in res and (ft / "results.json").exists()
  assert any(p.name.startswith("subset_50pct_seed") for p in ft.iterdir())
  assert (ft / "checkpoints").is_dir() and any((ft / "checkpoints").iterdir())
  assert not os.path.exists(tmp_path / "gs:") and not os.path.exists("gs:")
