"""Gradient-cache step == plain full-batch step (BatchNorm-free encoder), on 1 and 8 devices."""

import jax
import numpy as np
import pytest

from contrastive_jax import step as step_lib
from contrastive_jax import grad_cache, methods, optim, sharding
from tests import helpers


def _run(config, devices, batches, chunk, unroll=None):
  mesh = jax.make_mesh((len(devices),), (sharding.DATA_AXIS,), devices=devices)
  method = methods.get_method(config, 10)
  tx, schedule = optim.create_optimizer(
    config.optim, batch_size=config.batch_size, total_steps=100, steps_per_epoch=10
  )
  state = step_lib.create_state(method, tx, config, mesh, (config.image_size, config.image_size, 3))
  if chunk:
    step = step_lib.make_train_step(
      method, tx, schedule, mesh, grad_fn=grad_cache.make_grad_fn(method, chunk, unroll=unroll)
    )
  else:
    step = step_lib.make_train_step(method, tx, schedule, mesh)
  ms = []
  for b in batches:
    state, m = step(state, sharding.global_batch(b, mesh))
    ms.append(jax.tree.map(np.asarray, m))
  return jax.tree.map(np.asarray, state), ms


def _close(a, b, rtol, atol):
  assert jax.tree.structure(a) == jax.tree.structure(b)
  for (path, x), y in zip(jax.tree.flatten_with_path(a)[0], jax.tree.leaves(b)):
    np.testing.assert_allclose(x, y, rtol=rtol, atol=atol, err_msg=jax.tree_util.keystr(path))


def _sgd(config):
  # SGD: the update is linear in the gradient (Adam would amplify 1e-9 noise on near-zero entries).
  config.optim.update(name="sgd", base_lr=0.1, weight_decay=1e-4)
  return config


@pytest.mark.parametrize(
  "num_devices,chunk,unroll",
  [(1, 8, None), (8, 2, None), pytest.param(8, 2, False, marks=pytest.mark.slow)],
)
def test_grad_cache_equals_full_batch_without_bn(num_devices, chunk, unroll):
  # unroll=None is the CPU default (unrolled chunk loops); unroll=False is the rolled lax.scan that
  # GPU/TPU use (slow to run on CPU).
  config = _sgd(helpers.tiny_config("simclr", **{"model.norm": "group", "head.use_bn": False}))
  batches = [helpers.random_batch(config.batch_size, seed=1)]
  devices = jax.devices()[:num_devices]
  s_gc, m_gc = _run(config, devices, batches, chunk, unroll)
  s_full, m_full = _run(config, devices, batches, 0)
  assert s_gc.batch_stats == {} and s_full.batch_stats == {}
  _close(s_gc.params, s_full.params, rtol=1e-5, atol=1e-6)
  for a, b in zip(m_gc, m_full):
    _close(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_grad_cache_with_bn():
  config = _sgd(helpers.tiny_config("simclr"))
  batches = [helpers.random_batch(config.batch_size, seed=3)]
  devices = jax.devices()[:8]
  s_full, _ = _run(config, devices, batches, 0)
  # One chunk per device = the plain step's (synchronised) BatchNorm exactly.
  s_one, _ = _run(config, devices, batches, config.batch_size // 8)
  # atol 2e-6: the stem kernel's update is up to 0.13 and its gradient sums 8k products per device;
  # summed chunk by chunk one entry moved by 1.25e-6 (1e-5 of the update), the rest by 0 or 4e-9.
  _close(s_one.params, s_full.params, rtol=1e-5, atol=2e-6)
  _close(s_one.batch_stats, s_full.batch_stats, rtol=1e-5, atol=1e-6)
  # One row per chunk: per-chunk statistics, but one EMA update per step whose running MEAN equals
  # the plain step's (mean of chunk means = batch mean). (The running variance is the mean
  # within-chunk variance: on i.i.d. random images it is within 1e-3 of the global one, so it is not
  # asserted.)
  s_gc, m = _run(config, devices, batches, 1)
  assert np.isfinite(m[0]["loss"])
  bn = lambda s: s.batch_stats["encoder"]["stem_norm"]["bn"]
  np.testing.assert_allclose(bn(s_gc)["mean"], bn(s_full)["mean"], rtol=1e-5, atol=1e-6)


def test_bad_chunk_names_the_field():
  config = helpers.tiny_config("simclr")
  method = methods.get_method(config, 10)
  with pytest.raises(ValueError, match="grad_cache_chunk"):
    grad_cache.check_chunk(method, 3, 4)
