"""The sharded train step: 8 devices == 1 device on the same global batch (all_gather grads, BN sync)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from contrastive_jax import step as step_lib
from contrastive_jax import methods, optim, sharding
from tests import helpers


def _stepper(config, devices, num_classes=10):
  """(mesh, first state, jitted step) on `devices`."""
  mesh = jax.make_mesh((len(devices),), (sharding.DATA_AXIS,), devices=devices)
  method = methods.get_method(config, num_classes)
  tx, schedule = optim.create_optimizer(
    config.optim, batch_size=config.batch_size, total_steps=100, steps_per_epoch=10
  )
  state = step_lib.create_state(method, tx, config, mesh, (config.image_size, config.image_size, 3))
  return mesh, state, step_lib.make_train_step(method, tx, schedule, mesh)


def _assert_close(a, b, rtol=1e-5, atol=1e-6):
  flat_a, tree_a = jax.tree.flatten_with_path(a)[0], jax.tree.structure(a)
  flat_b = jax.tree.leaves(b)
  assert tree_a == jax.tree.structure(b)
  for (path, x), y in zip(flat_a, flat_b):
    np.testing.assert_allclose(x, y, rtol=rtol, atol=atol, err_msg=jax.tree_util.keystr(path))


@pytest.mark.parametrize("method", ["simclr"])
def test_eight_devices_equal_one(method):
  """Each step on 8 devices maps a state and a batch to what the 1-device step makes of them.

  Both steps of a pair start from the 1-device state (the second pair after one step), as in
  tests/test_methods.py: chained on their own, the sides compare training dynamics instead; with
  two-pass BatchNorm variances the micro ResNet's params after two chained steps differed by 1.2x
  this tolerance while each single step stayed within 0.21x of it (2026-12-04, AMD EPYC host).
  """
  # SGD: the update is linear in the gradient, so the comparison is not blurred by Adam's
  # normalisation of near-zero gradient entries (which turns 1e-9 absolute noise into 1e-5
  # relative).
  # resnet_micro: with the tiny config's one-block nano, grad_norm of 8 and 1 devices differed by
  # 1.8e-4 (float32 summation order), past rtol 1e-5; the methods' 8 == 1 tests run the nano.
  config = helpers.tiny_config(method, **{"model.name": "resnet_micro"})
  config.optim.update(name="sgd", base_lr=0.1, weight_decay=1e-4)
  mesh8, _, step8 = _stepper(config, jax.devices()[:8])
  mesh1, s1, step1 = _stepper(config, jax.devices()[:1])
  for seed in range(2):
    batch = helpers.random_batch(config.batch_size, seed=seed)
    # A copy made before the 1-device step donates s1 (device_put alone may share its buffers).
    s8 = jax.device_put(jax.tree.map(jnp.copy, s1), sharding.replicated(mesh8))
    s8, m8 = step8(s8, sharding.global_batch(batch, mesh8))
    s1, m1 = step1(s1, sharding.global_batch(batch, mesh1))
    h8, h1 = jax.tree.map(np.asarray, s8), jax.tree.map(np.asarray, s1)
    _assert_close(jax.tree.map(np.asarray, m8), jax.tree.map(np.asarray, m1), rtol=1e-5, atol=1e-6)
    _assert_close(h8.params, h1.params, rtol=1e-5, atol=1e-6)
    _assert_close(h8.batch_stats, h1.batch_stats, rtol=1e-4, atol=1e-5)
  assert int(h8.step) == 2


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
