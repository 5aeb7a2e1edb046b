"""CLIP and SigLIP as plug-ins of the one trainer: 8 devices == 1 device (loss, gradients, logit
scale), the gradient cache == the full batch, the clamp and the initial values, end to end runs."""

import importlib.util
import json
import math
import os

import jax
import numpy as np
import pytest

from contrastive_jax import grad_cache, methods, optim, sharding, train
from contrastive_jax import step as step_lib
from contrastive_jax.protocols import evaluate
from tests import clip_helpers

METHODS = ("clip", "siglip")


def _batch(config, n, seed=0):
  rng = np.random.default_rng(seed)
  tokens = rng.integers(1, 49000, size=(n, config.text.context_length)).astype(np.int32)
  lengths = rng.integers(3, config.text.context_length, size=n)
  tokens[:, 0] = 49406
  for i, k in enumerate(lengths):  # <end_of_text> then padding, as the tokenizer writes rows
    tokens[i, k] = 49407
    tokens[i, k + 1 :] = 0
  images = rng.uniform(size=(n, config.image_size, config.image_size, 3)).astype(np.float32)
  return {"image": images, "tokens": tokens}


def _run(config, num_devices, batches, chunk=0):
  mesh = jax.make_mesh((num_devices,), (sharding.DATA_AXIS,), devices=jax.devices()[:num_devices])
  method = methods.get_method(config, 4)
  tx, schedule = optim.create_optimizer(
    config.optim, batch_size=config.batch_size, total_steps=100, steps_per_epoch=10
  )
  state = step_lib.create_state(method, tx, config, mesh, (config.image_size,) * 2 + (3,))
  init = jax.tree.map(np.asarray, state.params)
  grad_fn = grad_cache.make_grad_fn(method, chunk) if chunk else None
  step = step_lib.make_train_step(method, tx, schedule, mesh, grad_fn=grad_fn)
  ms = []
  for b in batches:
    state, m = step(state, sharding.global_batch(b, mesh))
    ms.append(jax.tree.map(np.asarray, m))
  return init, jax.tree.map(np.asarray, state.params), ms


def _slack(leaf, atol=1e-5):
  return atol * max(1.0, float(np.max(np.abs(leaf)))) if np.size(leaf) else atol


def _close(a, b, rtol=1e-5, atol=1e-5):
  # float32 sums in another order (chunks, devices) after an SGD step. The absolute slack scales
  # with the leaf's own magnitude: the ViT class token holds values up to ~15, where a few ulps
  # (ulp(15) ~ 1e-6) of a reordered sum exceed 1e-5 on a small neighbour (seen: 1.7e-5 at 0.48 on
  # one x86-64 CPU, not on another); a sharding bug moves a leaf by a sizeable part of its update.
  for (path, x), y in zip(jax.tree.flatten_with_path(a)[0], jax.tree.leaves(b)):
    np.testing.assert_allclose(
      x, y, rtol=rtol, atol=_slack(y, atol), err_msg=jax.tree_util.keystr(path)
    )


def _sgd(config):
  # SGD: the update is linear in the gradient, so equal updates mean equal gradients.
  config.optim.update(name="sgd", base_lr=0.5, weight_decay=0.0, momentum=0.0)
  return config


@pytest.mark.parametrize("name", METHODS)
def test_eight_devices_equal_one_device(name):
  config = _sgd(clip_helpers.tiny_config(name))
  batches = [_batch(config, 32, seed=1), _batch(config, 32, seed=2)]
  init, p1, m1 = _run(config, 1, batches)
  _, p8, m8 = _run(config, 8, batches)
  _close(p8, p1)
  for a, b in zip(m8, m1):
    _close(a, b)
  # The compared leaves really moved: the class token by far more than _close's slack on it.
  moved = np.max(np.abs(p1["encoder"]["cls"] - init["encoder"]["cls"]))
  assert moved > 10 * _slack(p1["encoder"]["cls"]), moved
  # The logit scale (and SigLIP's bias) really learn, identically on 1 and 8 devices.
  assert abs(p1["logit_scale"] - init["logit_scale"]) > 1e-4
  if name == "siglip":
    assert abs(p1["logit_bias"] - init["logit_bias"]) > 1e-4


@pytest.mark.parametrize("name", METHODS)
@pytest.mark.parametrize("num_devices,chunk", [pytest.param(1, 8, marks=pytest.mark.slow), (8, 2)])
def test_grad_cache_equals_full_batch(name, num_devices, chunk):
  # Exact: no BatchNorm in the ViT or the text tower; the logit scale's gradient is summed once.
  config = _sgd(clip_helpers.tiny_config(name))
  batches = [_batch(config, 32, seed=3)]
  init, p_full, m_full = _run(config, num_devices, batches)
  _, p_gc, m_gc = _run(config, num_devices, batches, chunk=chunk)
  _close(p_gc, p_full)
  _close(m_gc[0], m_full[0])
  assert abs(p_full["logit_scale"] - init["logit_scale"]) > 1e-4


def test_initial_values_and_clamp():
  clip_cfg = clip_helpers.tiny_config("clip")
  sig_cfg = clip_helpers.tiny_config("siglip")
  clip_init, _, _ = _run(clip_cfg, 1, [])
  sig_init, _, _ = _run(sig_cfg, 1, [])
  np.testing.assert_allclose(clip_init["logit_scale"], math.log(1 / 0.07), rtol=1e-6)
  assert "logit_bias" not in clip_init
  np.testing.assert_allclose(sig_init["logit_scale"], math.log(10.0), rtol=1e-6)
  np.testing.assert_allclose(sig_init["logit_bias"], -10.0)
  # Starting at the clamp with a huge learning rate: the scale never exceeds 100 (CLIP Sec. 2.5).
  config = _sgd(clip_helpers.tiny_config("clip", **{"method_args.init_logit_scale": 100.0}))
  config.optim.base_lr = 1e3
  _, params, ms = _run(config, 1, [_batch(config, 32, seed=s) for s in range(3)])
  assert params["logit_scale"] <= math.log(100.0) + 1e-6
  assert all(m["logit_scale"] <= 100.0 + 1e-3 for m in ms)


def test_siglip_ring_equals_dense_in_the_step():
  ring = _sgd(clip_helpers.tiny_config("siglip", **{"method_args.loss_chunk_size": 3}))
  dense = _sgd(clip_helpers.tiny_config("siglip", **{"method_args.sigmoid_loss": "dense"}))
  batches = [_batch(ring, 40, seed=4)]  # 5 rows per device: not a multiple of the chunk
  _, p_ring, m_ring = _run(ring, 8, batches)
  assert set(p_ring) >= {"encoder", "text", "image_proj", "text_proj", "logit_scale", "logit_bias"}
  _, p_dense, m_dense = _run(dense, 8, batches)
  _close(p_ring, p_dense)
  _close(m_ring[0], m_dense[0])


def test_bad_fields_are_named():
  with pytest.raises(ValueError, match="config.method_args.sigmoid_loss"):
    methods.get_method(clip_helpers.tiny_config("siglip", **{"method_args.sigmoid_loss": "x"}), 4)
  with pytest.raises(ValueError, match="config.method_args.max_logit_scale"):
    methods.get_method(clip_helpers.tiny_config("clip", **{"method_args.max_logit_scale": 0.0}), 4)
  with pytest.raises(ValueError, match="config.text.source"):
    methods.get_method(clip_helpers.tiny_config("clip", **{"text.source": ""}), 4)


@pytest.mark.parametrize("name", ["clip", pytest.param("siglip", marks=pytest.mark.slow)])
def test_train_end_to_end_writes_zero_shot_results(name, tmp_path):
  config = clip_helpers.tiny_config(name, total_steps=3)
  results = train.train_and_evaluate(config, str(tmp_path))
  with open(os.path.join(tmp_path, "results.json")) as f:
    saved = json.load(f)
  for key in ("zero_shot_top1", "zero_shot_top1_random_init", "i2t_recall@1", "t2i_recall@1"):
    assert key in saved and 0.0 <= saved[key] <= 1.0, key
  assert results["steps"] == 3 and np.isfinite(results["zero_shot_top1"])


@pytest.mark.slow
def test_linear_probe_and_knn_read_the_image_tower(tmp_path):
  # A CLIP workdir evaluates like any other: its image tower (params['encoder']) through the
  # existing protocols (configs/linear_eval.py).
  w = str(tmp_path / "clip")
  config = clip_helpers.tiny_config("clip", dataset="synthetic", total_steps=2)
  config.text.update(source="templates", templates="cifar10")
  config.zero_shot.retrieval_split = ""
  config.update(synthetic_train_size=128, synthetic_test_size=64)
  train.train_and_evaluate(config, w)
  spec = importlib.util.spec_from_file_location("linear_eval_cfg", "configs/linear_eval.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  c = module.get_config("cpu")
  c.update(pretrained_workdir=w, eval_batch_size=64, knn_ks=(5,))
  c.linear.update(lrs=(0.1,), weight_decays=(0.0,), epochs=2, batch_size=64)
  res = evaluate.evaluate(c, str(tmp_path / "lin"))
  assert 0.0 <= res["linear_top1"] <= 1.0 and 0.0 <= res["knn_top1"] <= 1.0


@pytest.mark.slow
def test_image_text_run_resumes_exactly(tmp_path):
  # Interrupted after step 2 and resumed == uninterrupted: the image-text stream resumes bit for
  # bit and its fingerprint accepts the same config.
  def losses_of(workdir):
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
      rows = [json.loads(line) for line in f]
    return {r["step"]: r["loss"] for r in rows if "loss" in r}

  kw = dict(total_steps=4, log_every_steps=1, checkpoint_every_steps=2, eval_at_start=False)
  kw["optim.end_lr_factor"] = 1.0  # a constant LR: the 2-step run's schedule is the 4-step one's
  whole, parts = str(tmp_path / "whole"), str(tmp_path / "parts")
  train.train_and_evaluate(clip_helpers.tiny_config("siglip", **kw), whole)
  train.train_and_evaluate(clip_helpers.tiny_config("siglip", **{**kw, "total_steps": 2}), parts)
  train.train_and_evaluate(clip_helpers.tiny_config("siglip", **kw), parts)
  a, b = losses_of(whole), losses_of(parts)
  assert set(a) == {1, 2, 3, 4} and b[4] == pytest.approx(a[4], rel=1e-6)
  assert b[3] == pytest.approx(a[3], rel=1e-6)
