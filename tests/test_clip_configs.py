"""Every image-text config's cpu preset end to end: its model, method, optimiser and caption source,
with fewer steps, a smaller batch and smaller evaluation splits; results.json holds the zero-shot
and retrieval keys, at random initialisation and at the end."""

import importlib
import json
import os

import pytest

from contrastive_jax import train
from contrastive_jax.data import catalog

KEYS = ("zero_shot_top1", "zero_shot_top1_random_init", "i2t_recall@1", "t2i_recall@1")


def _cifar10_here() -> bool:
  d = catalog.resolve_data_dir(None)
  return bool(d) and os.path.isdir(os.path.join(d, "cifar10"))


def _shrink(c, **fields):
  c.update(batch_size=32, total_steps=2, log_every_steps=1, eval_at_start=True, **fields)
  c.zero_shot.batch_size = 64
  return c


@pytest.mark.slow
@pytest.mark.parametrize("name", ["clip_cifar10", "siglip_cifar10", "clip_coco"])
def test_cpu_preset_end_to_end(tmp_path, name):
  c = importlib.import_module(f"configs.{name}").get_config("cpu")
  if name == "clip_cifar10":  # the one end-to-end run on the shared CIFAR-10
    if not _cifar10_here():
      pytest.skip("CIFAR-10 is not prepared in the TFDS data_dir")
    _shrink(c, train_split="train[:1024]")
    c.zero_shot.update(split="test[:256]", retrieval_split="test[:128]")
  elif name == "siglip_cifar10":  # the same preset on the offline labelled 'synthetic' set
    _shrink(c, dataset="synthetic", eval_split="test")
    c.zero_shot.retrieval_split = "test"
  else:  # the cpu preset already reads the synthetic compositional captions
    assert (c.dataset, c.text.source) == ("synthetic_captions", "synthetic")
    _shrink(c)
  results = train.train_and_evaluate(c, str(tmp_path))
  with open(os.path.join(tmp_path, "results.json")) as f:
    saved = json.load(f)
  for key in KEYS:
    assert 0.0 <= saved[key] <= 1.0, key
  assert results["steps"] == 2 and results["method"] == c.method
