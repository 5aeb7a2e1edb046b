"""mode=export: safetensors + JSON of the encoder and a jax.export embed function, round-tripped.

The exported function is loaded in a subprocess that never imports contrastive_jax (nor Flax), as a
user without this code would, and must give method.embed's features.
"""

import dataclasses
import json
import os
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest
from absl import flags
import ml_collections
from ml_collections import config_flags

from contrastive_jax import pretrained
from contrastive_jax.methods import base
from contrastive_jax.protocols import export
from tests import helpers
from tests.pretrain_fixture import pretrain_dir  # noqa: F401  (fixture)

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _config(src: str, **overrides):
  c = helpers.tiny_config("simclr", mode="export", pretrained_workdir=src)
  c.export.batch_size = 4
  for k, v in overrides.items():
    c.export[k] = v
  return c


@pytest.fixture(scope="module")
def exported(pretrain_dir, tmp_path_factory):  # noqa: F811
  out = str(tmp_path_factory.mktemp("export"))
  res = export.run(_config(pretrain_dir), out)
  return out, res


def _images(n=4, size=16, seed=0):
  return np.random.default_rng(seed).uniform(size=(n, size, size, 3)).astype(np.float32)


def test_files_and_results(exported, pretrain_dir):  # noqa: F811
  out, res = exported
  for name in (export.SAFETENSORS, export.MANIFEST, export.EXPORTED, "results.json", "config.json"):
    assert os.path.getsize(os.path.join(out, name)) > 0, name
  with open(os.path.join(out, "results.json")) as f:
    saved = json.load(f)
  assert saved["export_input_shape"] == [4, 16, 16, 3]
  assert saved["encoder_path"] == ["encoder"] and saved["pretrained_step"] == 2
  assert set(saved["export_platforms"]) == {"cpu", "cuda", "tpu"}
  manifest = json.load(open(os.path.join(out, export.MANIFEST)))
  assert manifest["config"]["model"]["name"] == "resnet_nano"
  assert manifest["embed_output"]["shape"] == [4, saved["export_feature_dim"]]
  # Nothing was written into the pre-training workdir.
  assert not os.path.exists(os.path.join(pretrain_dir, export.SAFETENSORS))


def test_safetensors_round_trip_into_flax(exported, pretrain_dir):  # noqa: F811
  out, _ = exported
  loaded = pretrained.load(pretrain_dir)
  enc = export.read_encoder(out)
  # Every encoder leaf is there, bit for bit (parameters and BN statistics).
  flat = export.encoder_tensors(loaded.method, loaded.state)
  want = pretrained.encoder_fingerprint(loaded.method, loaded.state)
  got = np.concatenate(
    [
      np.asarray(x, np.float64).ravel()
      for x in jax.tree.leaves((enc["params"], enc["batch_stats"]))
    ]
  )
  np.testing.assert_array_equal(got, want)
  assert all(k.startswith(("params/", "batch_stats/")) for k in flat)
  assert enc["batch_stats"], "the ResNet's BN statistics must be exported"

  x = _images()
  ref = np.asarray(loaded.method.embed(loaded.state, x))
  # Into a random init of the method: only the encoder is replaced, and embed matches.
  rand = pretrained.load(pretrain_dir, random_init=True, seed=7)
  before = np.asarray(rand.method.embed(rand.state, x))
  assert not np.allclose(before, ref, atol=1e-3)  # the test could fail
  state = export.with_encoder(rand.method, rand.state, enc["params"], enc["batch_stats"])
  np.testing.assert_allclose(np.asarray(rand.method.embed(state, x)), ref, rtol=1e-6, atol=1e-6)
  # Into the bare Flax encoder module, built from the exported config alone.
  cfg = ml_collections.ConfigDict(enc["manifest"]["config"])
  module = base.build_encoder(cfg, axis_name=None)
  feats = module.apply({"params": enc["params"], "batch_stats": enc["batch_stats"]}, x, train=False)
  np.testing.assert_allclose(np.asarray(feats), ref, rtol=1e-6, atol=1e-6)


def test_exported_function_runs_without_this_code(exported, pretrain_dir, tmp_path):  # noqa: F811
  out, _ = exported
  x = _images(seed=3)
  np.save(tmp_path / "x.npy", x)
  script = textwrap.dedent(
    f"""
    import sys
    import jax, numpy as np
    exp = jax.export.deserialize(open({os.path.join(out, export.EXPORTED)!r}, "rb").read())
    assert exp.platforms == ("cpu", "cuda", "tpu"), exp.platforms
    assert [a.shape for a in exp.in_avals] == [(4, 16, 16, 3)], exp.in_avals
    np.save({str(tmp_path / "y.npy")!r}, np.asarray(exp.call(np.load({str(tmp_path / "x.npy")!r}))))
    mods = [m for m in sys.modules if m.split(".")[0] in ("contrastive_jax", "flax", "tests")]
    assert not mods, mods
    """
  )
  env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
  env["JAX_PLATFORMS"] = "cpu"
  subprocess.run([sys.executable, "-c", script], check=True, cwd=str(tmp_path), env=env)
  loaded = pretrained.load(pretrain_dir)
  ref = np.asarray(loaded.method.embed(loaded.state, x))
  np.testing.assert_allclose(np.load(tmp_path / "y.npy"), ref, rtol=1e-5, atol=1e-5)


def test_encoder_path_comes_from_the_method(pretrain_dir):  # noqa: F811
  loaded = pretrained.load(pretrain_dir)
  moved = dataclasses.replace(loaded.method, encoder_path=("projector",))
  names = export.encoder_tensors(moved, loaded.state)
  proj = jax.tree.leaves(loaded.state.params["projector"])
  assert len([k for k in names if k.startswith("params/")]) == len(proj)
  flat = export.flatten({"a": {"b": np.ones(2)}, "c": np.zeros(1)}, "params")
  assert sorted(flat) == ["params/a/b", "params/c"]
  assert export.unflatten(flat, "params")["a"]["b"].tolist() == [1.0, 1.0]


def test_bad_configs(pretrain_dir, tmp_path):  # noqa: F811
  with pytest.raises(ValueError, match="pretrained_workdir=W"):
    export.run(_config(None), str(tmp_path / "a"))
  with pytest.raises(ValueError, match="is the pre-training workdir"):
    export.run(_config(pretrain_dir), pretrain_dir)
  with pytest.raises(ValueError, match=r"config.export.platforms=\('gpu',\)"):
    export.run(_config(pretrain_dir, platforms=("gpu",)), str(tmp_path / "b"))
  with pytest.raises(ValueError, match=r"config.export.batch_size=0"):
    export.run(_config(pretrain_dir, batch_size=0), str(tmp_path / "c"))


def test_any_method_config_takes_the_export_fields_on_the_command_line():
  argv = ["main", f"--config={os.path.join(_ROOT, 'configs', 'byol_cifar10.py')}:cpu"]
  argv += ["--config.mode=export", "--config.pretrained_workdir=/w", "--config.export.batch_size=2"]
  argv += ["--config.embed.k=3", "--config.profile_num_steps=4"]
  fv = flags.FlagValues()
  config_flags.DEFINE_config_file("config", flag_values=fv, lock_config=True, sys_argv=argv)
  fv(argv)
  c = fv.config
  assert (c.mode, c.pretrained_workdir, c.export.batch_size, c.embed.k) == ("export", "/w", 2, 3)
  assert c.profile_num_steps == 4
