"""Config validation runs before any data or compilation: every bad value fails in the first
seconds with the field, the value and a valid example, through the CLI and train_and_evaluate."""

import os
import time

import pytest

from contrastive_jax import train, validate
from tests import fault_config
from tests.test_fault_tolerance import finish, launch, subprocess_env

# (override, the text the error must hold: field=value, why, example)
BAD = [
  ("log_every_steps=0", "config.log_every_steps=0: must be > 0; e.g."),
  ("checkpoint_every_steps=0", "config.checkpoint_every_steps=0: must be > 0; e.g."),
  ("eval_every_epochs=-1.0", "config.eval_every_epochs=-1.0: must be >= 0 (0: only at the end)"),
  ("keep_checkpoints=0", "config.keep_checkpoints=0: must be >= 1"),
  ("optim.base_lr=-1.0", "config.optim.base_lr=-1.0: a learning rate must be >= 0"),
  ("method_args.temperature=0.0", "config.method_args.temperature=0.0: a temperature must be > 0"),
  ("knn.temperature=-0.1", "config.knn.temperature=-0.1: a temperature must be > 0"),
  ("aug.color_prob=1.5", "config.aug.color_prob=1.5: a probability / fraction must be in [0, 1]"),
  ("aug.gray_prob=-0.1", "config.aug.gray_prob=-0.1: a probability"),
  ("aug.blur_prob=2.0", "config.aug.blur_prob=2.0: a probability"),
  ("aug.solarize_prob=1.1", "config.aug.solarize_prob=1.1: a probability"),
  ("aug.crop_area_min=0.0", "config.aug.crop_area_min=0.0: a crop area"),
  ("aug.crop_area_max=1.5", "config.aug.crop_area_max=1.5: a crop area"),
  ("optim.name=adam", "config.optim.name='adam': not one of ['lars', 'sgd', 'adamw']"),
  ("optim.lr_scaling=cubic", "config.optim.lr_scaling='cubic': not one of"),
  ("nan_policy=ignore", "config.nan_policy='ignore': not one of ['stop', 'skip']"),
  ("model.norm=batchnorm", "config.model.norm='batchnorm': not one of"),
  ("model.stem=big", "config.model.stem='big': not one of ['cifar', 'imagenet']"),
  ("model.dtype=float16", "config.model.dtype='float16': not one of ['float32', 'bfloat16']"),
  ("model.name=resnet7", "config.model.name='resnet7': not a model here"),
  ("method=simclear", "config.method='simclear': not one of"),
  ("text.source=captions", "config.text.source='captions': not one of"),
  ("text.tokenizer=gpt2", "config.text.tokenizer='gpt2': not one of ['clip_bpe']"),
  ("text.templates=fancy", "config.text.templates='fancy': not one of"),
]


def _set(config, override: str):
  dotted, text = override.split("=")
  *path, last = dotted.split(".")
  node = config
  for p in path:
    node = node[p]
  old = node[last]
  node[last] = type(old)(text) if old is not None else text


@pytest.mark.parametrize("override,expected", BAD, ids=[b[0] for b in BAD])
def test_bad_value_fails_before_data_or_compilation(override, expected, tmp_path):
  config = fault_config.get_config()
  _set(config, override)
  workdir = tmp_path / "w"
  t0 = time.time()
  with pytest.raises(validate.ConfigError) as err:
    train.train_and_evaluate(config, str(workdir))
  assert time.time() - t0 < 5.0  # no data read, nothing compiled
  assert expected in str(err.value) and "e.g. --config." in str(err.value), str(err.value)
  assert not workdir.exists()  # nothing written either


def test_every_bad_value_through_the_cli_in_one_error(tmp_path):
  """All of them at once through `python -m contrastive_jax.main`: one error lists every field."""
  workdir = str(tmp_path / "w")
  t0 = time.time()
  rc, out = finish(launch(workdir, subprocess_env(), *(f"--config.{o}" for o, _ in BAD)), 300)
  elapsed = time.time() - t0
  assert rc != 0, out[-3000:]
  assert f"{len(BAD)} config value(s) cannot be used" in out, out[-3000:]
  for _, expected in BAD:
    assert expected in out, expected
  assert not os.path.exists(workdir)
  # Process start (TF + JAX imports) included; a run that read data or compiled would take longer.
  assert elapsed < 120, elapsed
  print(f"CLI refused {len(BAD)} bad values in {elapsed:.1f}s")


def test_mode_and_crop_order_and_every_preset_is_valid():
  config = fault_config.get_config()
  config.mode = "train"
  config.aug.crop_area_min, config.aug.crop_area_max = 0.9, 0.5
  found = validate.problems(config)
  assert any(p.startswith("config.mode='train': not one of") for p in found), found
  assert any("crop_area_min=0.9 > config.aug.crop_area_max=0.5" in p for p in found), found
  assert validate.problems(fault_config.get_config()) == []


def test_evaluation_modes_validate_first(tmp_path):
  """linear_eval / finetune configs go through the same rules before anything is loaded."""
  from contrastive_jax.protocols import evaluate  # pylint: disable=g-import-not-at-top
  from tests.test_eval_run import _load_config  # pylint: disable=g-import-not-at-top

  cfg = _load_config("finetune")
  cfg.pretrained_workdir = str(tmp_path / "does_not_exist")
  cfg.finetune.lr, cfg.label_fraction = -0.1, 1.5
  with pytest.raises(validate.ConfigError) as err:
    evaluate.evaluate(cfg, str(tmp_path / "w2"))
  assert "config.finetune.lr=-0.1: a learning rate must be >= 0" in str(err.value)
  assert "config.label_fraction=1.5: a probability / fraction must be in [0, 1]" in str(err.value)
  assert not (tmp_path / "w2").exists()


def test_image_text_choices_match_the_data_modules_and_siglip_is_checked():
  """validate mirrors the choices of modules that import TensorFlow; they must stay equal."""
  from contrastive_jax.config_lib import base, clip  # pylint: disable=g-import-not-at-top
  from contrastive_jax.data import captions, image_text, tokenizer  # pylint: disable=g-import-not-at-top

  assert validate.TEXT_SOURCES == ("", *image_text.SOURCES)
  assert validate.TOKENIZERS == tokenizer.TOKENIZERS
  assert list(validate.template_names()) == captions.template_names()
  c = clip.configure(base.base_config(), "siglip")
  assert validate.problems(c) == []
  c.method_args.sigmoid_loss = "chunked"
  c.zero_shot.templates = "cifar100"
  c.text.templates = "cifar10"  # a valid name
  found = validate.problems(c)
  assert len(found) == 2, found
  assert found[0].startswith(
    "config.method_args.sigmoid_loss='chunked': not one of ['ring', 'dense']"
  )
  assert found[1].startswith("config.zero_shot.templates='cifar100': not one of")
