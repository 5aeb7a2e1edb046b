"""The config library (contrastive_jax/config_lib) and every preset of every configs/*.py."""

import glob
import importlib
import inspect
import os

from absl import flags
import ml_collections
from ml_collections import config_flags
import numpy as np
import pytest
import tensorflow as tf

from contrastive_jax.config_lib import augment as views
from contrastive_jax.config_lib import base, evaluation, methods
from contrastive_jax.data import augment as A


def test_view_defaults_are_simclr_cifar_and_overrides_apply():
  v = views.view(224, color_strength=1.0, blur_prob=0.5)
  assert (v.image_size, v.color_strength, v.blur_prob) == (224, 1.0, 0.5)
  assert (v.crop_area_min, v.color_prob, v.gray_prob, v.solarize_prob) == (0.08, 0.8, 0.2, 0.0)
  assert "resize_method" not in views.view(32)
  assert views.view(32, resize_method="bilinear").resize_method == "bilinear"
  # Types follow the defaults, so a locked config still takes float overrides of these fields.
  assert isinstance(views.view(32, blur_prob=0).blur_prob, float)


@pytest.mark.parametrize(
  "kwargs, match",
  [
    (dict(blur_probability=0.5), r"blur_probability.*fields of a view"),
    (dict(solarize_prob=1.5), r"solarize_prob=1.5.*\[0, 1\]"),
    (dict(crop_area_min=0.0), r"crop_area_min=0.0"),
    (dict(crop_area_min=0.9, crop_area_max=0.5), r"crop_area_min <= crop_area_max"),
  ],
)
def test_view_rejects_bad_fields(kwargs, match):
  with pytest.raises(ValueError, match=match):
    views.view(32, **kwargs)


def test_crop_flip_is_crop_then_flip_only():
  """simclr_view with crop_flip equals the crop and flip ops alone, on the same sub-seeds."""
  rng = np.random.default_rng(0)
  image = tf.constant(rng.uniform(size=(40, 30, 3)).astype(np.float32))
  cfg = views.crop_flip(16, crop_area_min=0.3)
  for s in range(4):
    seed = tf.constant([s, 7], tf.int64)
    got = A.simclr_view(image, seed, cfg).numpy()
    sub = tf.random.experimental.stateless_split(seed, num=6)  # simclr_view's per-op seeds
    ref = A.random_resized_crop(image, sub[0], 16, area_range=(0.3, 1.0))
    ref = A.random_flip(ref, sub[1]).numpy()
    np.testing.assert_allclose(got, ref, atol=1e-6)


# ----------------------------------------------------------------------------- every configs/*.py

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_NAMES = sorted(os.path.basename(p)[:-3] for p in glob.glob(os.path.join(_REPO, "configs", "*.py")))
_EVAL = ("linear_eval", "finetune")
_ALL = [(n, p) for n in _NAMES for p in importlib.import_module(f"configs.{n}").PRESETS]


def _flat(c: ml_collections.ConfigDict, prefix: str = "") -> dict:
  """{'a.b': value} of every leaf; an aug2 that is None is a leaf."""
  out = {}
  for k, v in c.items():
    if isinstance(v, ml_collections.ConfigDict):
      out.update(_flat(v, f"{prefix}{k}."))
    else:
      out[f"{prefix}{k}"] = v
  return out


def _parse(name: str, preset: str, *overrides: str) -> ml_collections.ConfigDict:
  """Loads configs/NAME.py:PRESET as main.py does (locked), with --config.x=y overrides."""
  argv = ["main", f"--config={os.path.join(_REPO, 'configs', name + '.py')}:{preset}", *overrides]
  fv = flags.FlagValues()
  config_flags.DEFINE_config_file("config", flag_values=fv, lock_config=True, sys_argv=argv)
  fv(argv)
  return fv.config


def test_every_config_lists_its_presets_in_its_docstring():
  assert {"simclr_cifar10", "linear_eval", "finetune", "sweep_batch_size"} <= set(_NAMES), _NAMES
  for name in _NAMES:
    mod = importlib.import_module(f"configs.{name}")
    default = inspect.signature(mod.get_config).parameters["preset"].default
    assert default in mod.PRESETS, name
    assert f"configs/{name}.py" in mod.__doc__, name  # the launch command
    for preset in mod.PRESETS:
      assert preset in mod.__doc__, (name, preset)
    with pytest.raises(ValueError, match=rf"for {name}\.py: use .*{mod.PRESETS[-1]}"):
      mod.get_config("no_such_preset")


@pytest.mark.parametrize("name, preset", _ALL)
def test_preset_has_every_field_with_its_default_type(name, preset):
  c = importlib.import_module(f"configs.{name}").get_config(preset)
  if name in _EVAL:
    assert c.mode == name
    ref = evaluation.eval_config(name)
    assert set(_flat(c)) == set(_flat(ref))
  else:
    assert c.mode == ("sweep" if name.startswith("sweep") else "pretrain")
    ref = base.base_config()
    extra = {k for k in _flat(c) if k not in _flat(ref)}
    # Only the method's own arguments, a second view, a sweep's grid and the optimiser's parameter
    # groups add to base_config's fields.
    assert all(
      k.startswith(("method_args.", "aug2.", "sweep.", "optim.param_groups.")) for k in extra
    ), extra
    if c.aug2 is not None:
      assert set(c.aug2) == set(c.aug)
    assert set(_flat(ref)) - {"aug2"} <= set(_flat(c))
  for key, default in _flat(ref).items():
    if default is not None and key in _flat(c):
      assert type(_flat(c)[key]) is type(default), (key, _flat(c)[key], default)


@pytest.mark.parametrize("name, preset", _ALL)
def test_locked_preset_takes_command_line_overrides(name, preset):
  if name in _EVAL:
    over = ["--config.pretrained_workdir=gs://b/run", "--config.dataset=cifar100"]
    over += ["--config.knn_temperature=0.2", "--config.export_split=test", "--config.seed=3"]
    c = _parse(name, preset, *over)
    assert (c.pretrained_workdir, c.dataset, c.knn_temperature) == ("gs://b/run", "cifar100", 0.2)
    assert (c.export_split, c.seed) == ("test", 3)
  else:
    over = ["--config.data_dir=gs://b/tfds", "--config.method_args.loss_tile_size=256"]
    over += ["--config.knn.bank_split=train", "--config.total_epochs=2", "--config.aug.blur_prob=1"]
    c = _parse(name, preset, *over)
    assert (c.data_dir, c.method_args.loss_tile_size, c.knn.bank_split) == (
      "gs://b/tfds",
      256,
      "train",
    )
    assert c.total_epochs == 2.0 and isinstance(c.total_epochs, float)
    assert c.aug.blur_prob == 1.0
    if c.aug2 is None:  # the None default still takes a view on a locked config
      c.aug2 = views.view(c.image_size, solarize_prob=0.2)
      assert c.aug2.solarize_prob == 0.2
  with pytest.raises(AttributeError, match="batch_sizee"):
    _parse(name, preset, "--config.batch_sizee=1")  # locked: a typo is an error, not a new field


def _shared(c: ml_collections.ConfigDict, keys: tuple[str, ...]) -> dict:
  """Those fields (of the head only its widths: its BN flags are the method's)."""
  out = {k: c[k].to_dict() if isinstance(c[k], ml_collections.ConfigDict) else c[k] for k in keys}
  return dict(out, head_widths=(c.head.hidden_dims, c.head.out_dim))


def test_cpu_presets_share_one_run():
  """The docstrings promise every method's cpu preset the same model, batch and schedule; the peak
  learning rate is the shared 2e-3 and the length 5 epochs, except SimCLR's (tuned for ./run.sh:
  configs/simclr_cifar10.py)."""
  keys = ("model", "batch_size", "total_epochs", "total_steps", "optim", "eval_every_epochs")
  keys += ("eval_at_start", "log_every_steps", "checkpoint_every_steps")
  simclr = importlib.import_module("configs.simclr_cifar10").get_config("cpu")
  assert simclr.optim.base_lr == 1.6e-2 and simclr.total_epochs == 15.0
  simclr.optim.base_lr, simclr.total_epochs = 2e-3, 5.0
  ref = _shared(simclr, keys)
  for name in _NAMES:
    if name.endswith("_cifar10"):
      c = importlib.import_module(f"configs.{name}").get_config("cpu")
      if c.text.source:  # image-text methods share their own CPU run (config_lib/clip.py cpu)
        continue
      if name == "simclr_cifar10":
        c.optim.base_lr, c.total_epochs = 2e-3, 5.0
      assert _shared(c, keys) == ref, name
      assert c.aug.crop_area_min == 0.2 and (c.aug2 is None or c.aug2.crop_area_min == 0.2)
  # The ImageNet configs' cpu presets: 20 steps (total_steps wins over the recipe's epochs).
  keys = ("model", "batch_size", "total_steps", "optim", "eval_every_epochs", "eval_at_start")
  smoke = _shared(importlib.import_module("configs.byol_imagenet").get_config("cpu"), keys)
  for name in _NAMES:
    if name.endswith("_imagenet"):
      c = importlib.import_module(f"configs.{name}").get_config("cpu")
      assert _shared(c, keys) == smoke, name
      assert c.image_size == c.aug.image_size and c.model.name == "resnet_tiny"
      if name != "simclr_imagenet":  # that one smoke-tests on imagenette
        assert (c.dataset, c.image_size, c.knn.k) == ("synthetic", 32, 20), name


def test_sweep_presets_name_their_own_config_file():
  for preset in importlib.import_module("configs.sweep_batch_size").PRESETS:
    c = _parse("sweep_batch_size", preset)
    assert c.sweep.config_file == f"configs/sweep_batch_size.py:{preset}"


def test_library_errors_name_the_bad_value():
  with pytest.raises(ValueError, match=r"'simclrr'.*simclr"):
    methods.configure(base.base_config(), "simclrr")
  with pytest.raises(ValueError, match=r"mode='pretrain'.*linear_eval"):
    evaluation.eval_config("pretrain")


def test_configs_import_by_module_name_only():
  """configs/*.py load each other and the library as modules, never through a file path."""
  for name in _NAMES:
    with open(os.path.join(_REPO, "configs", f"{name}.py"), encoding="utf-8") as f:
      source = f.read()
    assert "importlib" not in source and "os.path" not in source, name
