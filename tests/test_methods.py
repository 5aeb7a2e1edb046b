"""MoCo v2/v3, BYOL, SimSiam, SupCon and triplet as plug-ins of the one trainer.

8 fake devices == 1 device for every method (loss, metrics, params, BN stats and extras), MoCo's
queue, BYOL's EMA, stop-gradients, SupCon's cross-device positives, and every CPU preset end to end.
"""

import dataclasses
import functools
import importlib
import json
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from contrastive_jax import step as step_lib
from contrastive_jax import losses, methods, optim, sharding, train
from contrastive_jax.methods import base
from tests import helpers
from tests.test_train_step import _assert_close

METHODS = ["moco_v2", "moco_v3", "byol", "simsiam", "supcon", "triplet"]
# Compiling a train step is most of a test's cost on CPU, so each (method, devices, overrides) is
# built once per session (_env) and the 8-device state is the 1-device one, resharded (same values).
_EXTRA = {
  "moco_v2": {"method_args.queue_size": 96, "head.use_bn": False},  # 3 batches of 32
  "moco_v3": {"method_args.momentum": 0.9},
  "byol": {"method_args.momentum": 0.9},
  "supcon": {"method_args.temperature": 0.1},
  "triplet": {"method_args.margin": 0.2, "method_args.mining": "hard"},
}


def _config(method, **overrides):
  # SGD: its update is linear in the gradient, so 8 == 1 device on the parameters is a tight check
  # (Adam's normalisation amplifies float rounding in near-zero gradients).
  sgd = {
    "optim.name": "sgd",
    "optim.base_lr": 0.1,
    "optim.momentum": 0.9,
    "optim.weight_decay": 1e-4,
  }
  return helpers.tiny_config(method, **{**sgd, **_EXTRA.get(method, {}), **overrides})


@dataclasses.dataclass
class _Env:
  config: Any
  method: Any
  mesh: Any
  state0: Any
  step: Any

  def fresh_state(self):
    """A copy of the initial state (the train step donates its input)."""
    return jax.device_put(self.state0, sharding.replicated(self.mesh), may_alias=False)


@functools.cache
def _env(method_name: str, ndev: int, overrides: tuple = ()) -> _Env:
  config = _config(method_name, **dict(overrides))
  mesh = jax.make_mesh((ndev,), (sharding.DATA_AXIS,), devices=jax.devices()[:ndev])
  method = methods.get_method(config, 10)
  tx, schedule = optim.create_optimizer(
    config.optim, batch_size=config.batch_size, total_steps=100, steps_per_epoch=10
  )
  if ndev == 1:
    state0 = step_lib.create_state(method, tx, config, mesh, (config.image_size,) * 2 + (3,))
  else:
    state0 = jax.device_put(
      _env(method_name, 1, overrides).state0, sharding.replicated(mesh), may_alias=False
    )
  return _Env(config, method, mesh, state0, step_lib.make_train_step(method, tx, schedule, mesh))


def _host(tree):
  return jax.tree.map(
    lambda x: (
      np.array(x)
      if isinstance(x, jax.Array) and not jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)
      else x
    ),
    tree,
  )


def _shard_map(env, body):
  return jax.jit(
    jax.shard_map(body, mesh=env.mesh, in_specs=(P(), P(sharding.DATA_AXIS)), out_specs=P())
  )


def _grads(env, batch, wrt="params"):
  """Gradient of method.loss_fn w.r.t. params or extras, inside shard_map like the train step."""
  method = env.method

  def body(state, batch):
    rng = jax.random.fold_in(state.rng, jax.lax.axis_index(sharding.DATA_AXIS))
    if wrt == "params":
      f = lambda p: method.loss_fn(p, state, batch, rng, state.step)[0]
      return jax.grad(f)(state.params)
    # Only the float leaves of extras can carry a gradient (MoCo's queue pointer is an int).
    leaves, treedef = jax.tree.flatten(state.extras)
    is_float = [jnp.issubdtype(x.dtype, jnp.floating) for x in leaves]

    def f(floats):
      it = iter(floats)
      extras = treedef.unflatten([next(it) if fl else x for x, fl in zip(leaves, is_float)])
      return method.loss_fn(state.params, state.replace(extras=extras), batch, rng, state.step)[0]

    return jax.grad(f)([x for x, fl in zip(leaves, is_float) if fl])

  return _host(_shard_map(env, body)(env.state0, sharding.global_batch(batch, env.mesh)))


# ----------------------------------------------------------------------------- 8 devices == 1 devic

# On 2 CPU cores each case costs 12-28 s, mostly compilation (nano ResNet): MoCo v2 (queue,
# all_gather, EMA) and BYOL (EMA, predictor) run by default, the rest with the slow tests (`-m slow`).
_FAST = ("moco_v2", "byol")


@pytest.mark.parametrize(
  "method,overrides",
  [pytest.param(m, (), id=m, marks=() if m in _FAST else pytest.mark.slow) for m in METHODS]
  + [
    pytest.param(
      "triplet",
      (("method_args.mining", "semi_hard"),),
      id="triplet_semi_hard",
      marks=pytest.mark.slow,
    )
  ],
)
def test_eight_devices_equal_one(method, overrides):
  """Each step on 8 devices maps a state and a batch to what the 1-device step makes of them.

  Both steps of the pair start from the 1-device state (the second one with momentum, queue and EMA
  already moved). Chaining each side on its own compared the training dynamics instead: for SupCon
  on an AMD EPYC host, the 8.6e-7 float32 difference the first steps leave in the parameters moved
  the second step's gradient by 2e-2, 2e-3 in the parameters after it.
  """
  e8, e1 = _env(method, 8, overrides), _env(method, 1, overrides)
  s1 = e1.fresh_state()
  for seed in range(2):
    batch = helpers.random_batch(32, seed=seed)
    # A copy made before the 1-device step donates s1 (device_put alone may share its buffers).
    s8 = jax.device_put(jax.tree.map(jnp.copy, s1), sharding.replicated(e8.mesh))
    s8, m8 = e8.step(s8, sharding.global_batch(batch, e8.mesh))
    s1, m1 = e1.step(s1, sharding.global_batch(batch, e1.mesh))
    h8, h1 = _host(s8), _host(s1)
    m8, m1 = _host(m8), _host(m1)
    assert {"loss", "embedding_std", "probe_loss", "probe_accuracy"} <= set(m8)
    assert np.isfinite(m8["loss"]), m8
    _assert_close(m8, m1, rtol=1e-4, atol=1e-5)
    _assert_close(h8.params, h1.params, rtol=1e-4, atol=1e-5)
    _assert_close(h8.batch_stats, h1.batch_stats, rtol=1e-4, atol=1e-5)
    _assert_close(h8.extras, h1.extras, rtol=1e-4, atol=1e-5)
  assert int(h8.step) == 2


# ----------------------------------------------------------------------------- MoCo v2 queue


def _keys(config, state, view2):
  """The key encoder's normalised outputs on the whole global batch, computed directly on one device."""
  net = base.build_target_net(config, axis_name=None)
  t = state.extras["target"]
  out, _ = base.apply_train(net, t["params"], t["batch_stats"], jnp.asarray(view2))
  return np.asarray(base.l2_normalize(out["proj"]))


def test_moco_v2_queue_holds_last_keys():
  env = _env("moco_v2", 8)
  b, size = env.config.batch_size, env.config.method_args.queue_size
  assert size == 3 * b
  state = env.fresh_state()
  queue0 = np.array(state.extras["queue"])
  expected = []
  for s in range(5):
    batch = helpers.random_batch(b, seed=10 + s)
    expected.append(_keys(env.config, _host(state), batch["view2"]))
    state, _ = env.step(state, sharding.global_batch(batch, env.mesh))
    k = min(s + 1, 3)
    queue, ptr = np.asarray(state.extras["queue"]), int(state.extras["queue_ptr"])
    assert ptr == ((s + 1) * b) % size
    # The ring buffer read from the pointer: oldest surviving key first, newest last.
    ordered = np.roll(queue, -ptr, axis=0)
    np.testing.assert_allclose(
      ordered[size - k * b :], np.concatenate(expected[-k:]), rtol=1e-4, atol=1e-5
    )
    if s == 0:  # the initial random entries not yet overwritten are untouched
      np.testing.assert_array_equal(queue[b:], queue0[b:])


def test_moco_v2_rejects_queue_not_multiple_of_batch():
  with pytest.raises(ValueError, match="queue_size"):
    methods.get_method(_config("moco_v2", **{"method_args.queue_size": 100}), 10)


# ----------------------------------------------------------------------------- EMA targets


def test_byol_target_follows_ema_formula():
  env = _env("byol", 8)
  base_tau, total = env.config.method_args.momentum, int(env.config.total_steps)
  state = env.fresh_state()
  for s in range(2):
    old = _host(state.extras["target"]["params"])
    state, _ = env.step(state, sharding.global_batch(helpers.random_batch(32, seed=s), env.mesh))
    tau = 1 - (1 - base_tau) * (np.cos(np.pi * s / total) + 1) / 2
    online = base.subtree(_host(state.params), base.TARGET_KEYS)
    want = jax.tree.map(lambda t, o, tau=tau: tau * t + (1 - tau) * o, old, online)
    _assert_close(_host(state.extras["target"]["params"]), want, rtol=1e-5, atol=1e-6)
  assert base_tau < tau < 1.0  # the cosine schedule moved tau towards 1


def test_cosine_momentum_schedule():
  np.testing.assert_allclose(base.cosine_momentum(0.996, 0, 100), 0.996, rtol=1e-6)
  np.testing.assert_allclose(base.cosine_momentum(0.996, 50, 100), 0.998, rtol=1e-6)
  np.testing.assert_allclose(base.cosine_momentum(0.996, 100, 100), 1.0, rtol=1e-6)
  np.testing.assert_allclose(base.cosine_momentum(0.99, 70, None), 0.99, rtol=1e-6)


@pytest.mark.parametrize(
  "method",
  [
    "byol",
    pytest.param("moco_v2", marks=pytest.mark.slow),
    pytest.param("moco_v3", marks=pytest.mark.slow),
  ],
)
def test_no_gradient_reaches_the_target(method):
  env = _env(method, 8)
  batch = helpers.random_batch(32, seed=3)
  g_extras = _grads(env, batch, wrt="extras")
  assert all(np.all(np.asarray(x) == 0) for x in jax.tree.leaves(g_extras))
  if method == "byol":  # the online branch does learn
    g_params = _grads(env, batch)
    assert any(np.any(np.asarray(x) != 0) for x in jax.tree.leaves(g_params["encoder"]))


def test_simsiam_stop_gradient():
  """The method's gradient == d/dparams of the loss with the z branch evaluated at frozen params."""
  env = _env("simsiam", 8)
  batch = helpers.random_batch(32, seed=4)
  net = base.build_net(env.config, 10, predictor=True)

  def body(state, batch):
    n = batch["view1"].shape[0]
    views = (batch["view1"], batch["view2"])  # one forward per view, SimSiam's official default
    labels = jnp.concatenate([batch["label"], batch["label"]])

    def ref(params, frozen):
      out, _ = base.apply_views(net, params, state.batch_stats, views, per_view=True)
      z = base.apply_views(net, frozen, state.batch_stats, views, per_view=True)[0]["proj"]
      loss = 0.5 * (
        losses.negative_cosine(out["pred"][:n], z[n:])
        + losses.negative_cosine(out["pred"][n:], z[:n])
      )
      return base.global_mean(loss) + base.probe_loss(out["probe_logits"], labels)[0]

    return jax.grad(ref)(state.params, state.params)

  want = _host(_shard_map(env, body)(env.state0, sharding.global_batch(batch, env.mesh)))
  got = _grads(env, batch)
  _assert_close(got, want, rtol=1e-4, atol=1e-6)


@pytest.mark.slow
def test_simsiam_without_stop_gradient_differs():
  batch = helpers.random_batch(32, seed=4)
  got = _grads(_env("simsiam", 8), batch)
  no_sg = _grads(_env("simsiam", 8, (("method_args.stop_gradient", False),)), batch)
  diff = max(
    float(np.max(np.abs(a - b)))
    for a, b in zip(jax.tree.leaves(no_sg["projector"]), jax.tree.leaves(got["projector"]))
  )
  assert diff > 1e-6  # without the stop-gradient the projector gets the target branch's gradient


# ----------------------------------------------------------------------------- SupCon positives


def _loss(env, batch):
  def body(state, batch):
    rng = jax.random.fold_in(state.rng, jax.lax.axis_index(sharding.DATA_AXIS))
    return env.method.loss_fn(state.params, state, batch, rng, state.step)[1]["metrics"]["loss"]

  return float(_shard_map(env, body)(env.state0, sharding.global_batch(batch, env.mesh)))


def test_supcon_positives_across_devices():
  batch = helpers.random_batch(32, seed=5)
  # Row i and row i + 16 share a label: on 8 devices (4 rows each) every positive pair is split.
  batch["label"] = np.tile(np.arange(16, dtype=np.int32), 2)
  env8, env1 = _env("supcon", 8), _env("supcon", 1)
  loss8, loss1 = _loss(env8, batch), _loss(env1, batch)
  np.testing.assert_allclose(loss8, loss1, rtol=1e-5)
  perm = np.random.default_rng(0).permutation(32)
  np.testing.assert_allclose(_loss(env8, {k: v[perm] for k, v in batch.items()}), loss8, rtol=1e-5)
  # The labels matter: with all-distinct labels only the other view is a positive.
  assert abs(_loss(env8, dict(batch, label=np.arange(32, dtype=np.int32))) - loss8) > 1e-3


# ----------------------------------------------------------------------------- the CPU presets


@pytest.mark.slow
@pytest.mark.parametrize("method", METHODS)
def test_cpu_preset_end_to_end_loss_falls(method, tmp_path):
  mod = importlib.import_module(f"configs.{method}_cifar10")
  config = mod.get_config("cpu")
  config.update(
    dataset="synthetic",
    batch_size=64,
    total_steps=24,
    log_every_steps=1,
    checkpoint_every_steps=1000,
    eval_at_start=False,
    eval_every_epochs=0.0,
  )
  config.optim.warmup_epochs = 0.0
  config.knn.update(batch_size=128, k=10)
  skip = 0
  if method == "moco_v2":
    # A one-batch queue holds real keys from step 2 on; before that the negatives are the random
    # initial queue (easy), so the loss is compared from step 2.
    config.method_args.queue_size = 64
    skip = 1
  results = train.train_and_evaluate(config, str(tmp_path))
  assert results["steps"] == 24 and 0.0 <= results["knn_top1"] <= 1.0
  with open(os.path.join(tmp_path, "metrics.jsonl"), encoding="utf-8") as f:
    rows = [json.loads(line) for line in f]
  loss = [r["loss"] for r in rows if "loss" in r]
  std = [r["embedding_std"] for r in rows if "embedding_std" in r]
  assert len(loss) == 24 and len(std) == 24
  assert np.mean(loss[-5:]) < np.mean(loss[skip : skip + 5]), loss


@pytest.mark.parametrize("name", [f"{m}_{d}" for m in METHODS for d in ("cifar10", "imagenet")])
def test_configs_build(name):
  """Every preset of every config builds its method (shapes only: no training)."""
  mod = importlib.import_module(f"configs.{name}")
  presets = ("cpu", "paper")
  for preset in presets:
    try:
      config = mod.get_config(preset)
    except ValueError:
      continue
    assert config.method == name.rsplit("_", 1)[0]
    method = methods.get_method(config, 10, total_steps=1000)
    size = 32 if preset == "cpu" or "cifar" in name else 64
    shapes = jax.eval_shape(method.init, jax.random.key(0), jnp.zeros((2, size, size, 3)))
    assert "encoder" in shapes["params"] and "probe" in shapes["params"]
