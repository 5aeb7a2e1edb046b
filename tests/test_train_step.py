"""The sharded train step: 8 devices == 1 device on the same global batch (all_gather grads, BN sync)."""

import jax
import numpy as np
import pytest

from contrastive_jax import step as step_lib
from contrastive_jax import methods, optim, sharding
from tests import helpers


def _run_steps(config, devices, batches, num_classes=10):
  mesh = jax.make_mesh((len(devices),), (sharding.DATA_AXIS,), devices=devices)
  method = methods.get_method(config, num_classes)
  tx, schedule = optim.create_optimizer(
    config.optim, batch_size=config.batch_size, total_steps=100, steps_per_epoch=10
  )
  state = step_lib.create_state(method, tx, config, mesh, (config.image_size, config.image_size, 3))
  step = step_lib.make_train_step(method, tx, schedule, mesh)
  all_metrics = []
  for b in batches:
    state, m = step(state, sharding.global_batch(b, mesh))
    all_metrics.append(jax.tree.map(np.asarray, m))
  return jax.tree.map(np.asarray, state), all_metrics


def _assert_close(a, b, rtol=1e-5, atol=1e-6):
  flat_a, tree_a = jax.tree.flatten_with_path(a)[0], jax.tree.structure(a)
  flat_b = jax.tree.leaves(b)
  assert tree_a == jax.tree.structure(b)
  for (path, x), y in zip(flat_a, flat_b):
    np.testing.assert_allclose(x, y, rtol=rtol, atol=atol, err_msg=jax.tree_util.keystr(path))


@pytest.mark.parametrize("method", ["simclr"])
def test_eight_devices_equal_one(method):
  # SGD: the update is linear in the gradient, so the comparison is not blurred by Adam's
  # normalisation of near-zero gradient entries (which turns 1e-9 absolute noise into 1e-5
  # relative).
  # resnet_micro: with the tiny config's one-block nano, grad_norm of 8 and 1 devices differed by
  # 1.8e-4 (float32 summation order), past rtol 1e-5; the methods' 8 == 1 tests run the nano.
  config = helpers.tiny_config(method, **{"model.name": "resnet_micro"})
  config.optim.update(name="sgd", base_lr=0.1, weight_decay=1e-4)
  batches = [helpers.random_batch(config.batch_size, seed=s) for s in range(2)]
  s8, m8 = _run_steps(config, jax.devices()[:8], batches)
  s1, m1 = _run_steps(config, jax.devices()[:1], batches)
  for a, b in zip(m8, m1):
    _assert_close(a, b, rtol=1e-5, atol=1e-6)
  _assert_close(s8.params, s1.params, rtol=1e-5, atol=1e-6)
  _assert_close(s8.batch_stats, s1.batch_stats, rtol=1e-4, atol=1e-5)
  assert int(s8.step) == 2


def test_missing_batch_key_fails_at_trace_time_naming_the_keys():
  # The step reads method.batch_keys: an image-text batch fed to an image method (or the reverse)
  # fails before anything compiles, naming what is missing and the config fix.
  config = helpers.tiny_config("simclr")
  mesh = sharding.make_mesh()
  method = methods.get_method(config, 10)
  tx, schedule = optim.create_optimizer(
    config.optim, batch_size=config.batch_size, total_steps=10, steps_per_epoch=10
  )
  state = step_lib.create_state(method, tx, config, mesh, (config.image_size, config.image_size, 3))
  step = step_lib.make_train_step(method, tx, schedule, mesh)
  batch = helpers.random_batch(config.batch_size, config.image_size)
  del batch["view2"]
  with pytest.raises(ValueError, match=r"missing \['view2'\].*text\.source"):
    step(state, sharding.global_batch(batch, mesh))
