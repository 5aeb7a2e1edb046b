"""A tiny pre-training workdir for the export / embed / projector tests (2 steps, nano ResNet)."""

import pytest

from contrastive_jax import train
from tests import helpers


def tiny_run(workdir: str, **overrides) -> str:
  """Pre-trains SimCLR (2 steps unless overridden) on 256 synthetic 16 px images into `workdir`."""
  fields = dict(synthetic_train_size=256, synthetic_test_size=64, total_steps=2)
  fields.update(log_every_steps=1, checkpoint_every_steps=2)
  cfg = helpers.tiny_config("simclr", **{**fields, **overrides})
  train.train_and_evaluate(cfg, workdir)
  return workdir


@pytest.fixture(scope="module")
def pretrain_dir(tmp_path_factory):
  return tiny_run(str(tmp_path_factory.mktemp("pretrain")))
