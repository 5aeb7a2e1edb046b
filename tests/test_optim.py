"""Optimiser tests: LARS masks and trust ratio, LR scaling, warmup + cosine schedule, config errors."""

import types

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from contrastive_jax import optim


def _cfg(**kw):
  base = dict(
    name="lars",
    base_lr=0.3,
    lr_scaling="linear",
    weight_decay=1e-4,
    momentum=0.9,
    nesterov=False,
    warmup_epochs=0.0,
    trust_coefficient=0.001,
    end_lr_factor=0.0,
    b1=0.9,
    b2=0.999,
    grad_clip_norm=0.0,
  )
  base.update(kw)
  return types.SimpleNamespace(**base)


def _params():
  k = jax.random.split(jax.random.key(0), 4)
  return {
    "conv": {"kernel": jax.random.normal(k[0], (3, 3, 4, 8))},
    "dense": {"kernel": jax.random.normal(k[1], (8, 5)), "bias": jax.random.normal(k[2], (5,))},
    "norm": {"bn": {"scale": 1.0 + jax.random.normal(k[3], (8,)), "bias": jnp.full((8,), 0.5)}},
  }


def _step(tx, params, grads):
  state = tx.init(params)
  updates, _ = tx.update(grads, state, params)
  return updates


def test_weight_decay_mask():
  mask = optim.weight_decay_mask(_params())
  assert mask == {
    "conv": {"kernel": True},
    "dense": {"kernel": True, "bias": False},
    "norm": {"bn": {"scale": False, "bias": False}},
  }
  # Named 'scale'/'bias' are excluded even if a shape is unusual.
  assert optim.weight_decay_mask({"x": {"scale": jnp.ones((2, 2))}}) == {"x": {"scale": False}}


def test_lars_zero_grad_decays_only_kernels():
  params = _params()
  tx, sched = optim.create_optimizer(_cfg(), batch_size=256, total_steps=100, steps_per_epoch=10)
  lr = float(sched(0))
  assert lr == pytest.approx(0.3)
  grads = jax.tree.map(jnp.zeros_like, params)
  upd = _step(tx, params, grads)
  for leaf in jax.tree.leaves(upd["norm"]) + [upd["dense"]["bias"]]:
    np.testing.assert_array_equal(leaf, 0.0)
  for name in ("conv", "dense"):
    w = params[name]["kernel"]
    u = upd[name]["kernel"]
    assert float(jnp.abs(u).max()) > 0
    # g = 0: update = -lr * tc * ||w|| / ||wd w|| * wd w = -lr * tc * ||w|| * w / ||w||.
    expected = -lr * 0.001 * w
    np.testing.assert_allclose(u, expected, rtol=1e-5)


def test_lars_trust_ratio_only_on_kernels():
  params = _params()
  wd, tc = 1e-4, 0.001
  tx, sched = optim.create_optimizer(
    _cfg(weight_decay=wd, trust_coefficient=tc), batch_size=256, total_steps=100, steps_per_epoch=10
  )
  lr = float(sched(0))
  grads = jax.tree.map(lambda p: jax.random.normal(jax.random.key(7), p.shape), params)
  upd = _step(tx, params, grads)
  # Bias and BN parameters: plain momentum SGD, first step = -lr * g.
  np.testing.assert_allclose(upd["dense"]["bias"], -lr * grads["dense"]["bias"], rtol=1e-6)
  for k in ("scale", "bias"):
    np.testing.assert_allclose(upd["norm"]["bn"][k], -lr * grads["norm"]["bn"][k], rtol=1e-6)
  for name in ("conv", "dense"):
    w, g = params[name]["kernel"], grads[name]["kernel"]
    d = g + wd * w
    ratio = tc * jnp.linalg.norm(w) / jnp.linalg.norm(d)
    np.testing.assert_allclose(upd[name]["kernel"], -lr * ratio * d, rtol=1e-5)


def test_lars_momentum_second_step():
  params = {"b": jnp.ones((3,))}
  tx, sched = optim.create_optimizer(
    _cfg(lr_scaling="none", base_lr=0.1), batch_size=1, total_steps=100, steps_per_epoch=10
  )
  g = {"b": jnp.array([1.0, 2.0, 3.0])}
  state = tx.init(params)
  u1, state = tx.update(g, state, params)
  u2, _ = tx.update(g, state, params)
  lr0, lr1 = float(sched(0)), float(sched(1))
  np.testing.assert_allclose(u2["b"], -(0.9 * lr0 + lr1) * g["b"], rtol=1e-5)


@pytest.mark.parametrize("name", ["sgd", "adamw"])
def test_sgd_adamw_mask_weight_decay(name):
  params = _params()
  tx, _ = optim.create_optimizer(
    _cfg(name=name, weight_decay=0.1), batch_size=256, total_steps=100, steps_per_epoch=10
  )
  upd = _step(tx, params, jax.tree.map(jnp.zeros_like, params))
  for leaf in jax.tree.leaves(upd["norm"]) + [upd["dense"]["bias"]]:
    np.testing.assert_array_equal(leaf, 0.0)
  np.testing.assert_allclose(
    upd["conv"]["kernel"], -0.3 * 0.1 * params["conv"]["kernel"], rtol=1e-5
  )


def test_sgd_matches_optax_reference():
  params = _params()
  grads = jax.tree.map(lambda p: jnp.full(p.shape, 0.5), params)
  tx, _ = optim.create_optimizer(
    _cfg(name="sgd", weight_decay=0.0, nesterov=True),
    batch_size=256,
    total_steps=100,
    steps_per_epoch=10,
  )
  ref = optax.sgd(0.3, momentum=0.9, nesterov=True)
  jax.tree.map(
    lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6),
    _step(tx, params, grads),
    _step(ref, params, grads),
  )


def test_grad_clip():
  params = {"w": jnp.ones((2, 2))}
  tx, _ = optim.create_optimizer(
    _cfg(
      name="sgd", weight_decay=0.0, momentum=0.0, grad_clip_norm=1.0, lr_scaling="none", base_lr=1.0
    ),
    batch_size=1,
    total_steps=10,
    steps_per_epoch=1,
  )
  upd = _step(tx, params, {"w": jnp.full((2, 2), 10.0)})
  np.testing.assert_allclose(jnp.linalg.norm(upd["w"]), 1.0, rtol=1e-5)


def test_lr_scaling():
  assert optim.learning_rate(0.3, 4096, "linear") == pytest.approx(4.8)
  assert optim.learning_rate(0.075, 4096, "sqrt") == pytest.approx(4.8)
  assert optim.learning_rate(0.1, 4096, "none") == pytest.approx(0.1)
  with pytest.raises(ValueError, match=r"config\.optim\.lr_scaling.*linear"):
    optim.learning_rate(0.1, 256, "quadratic")


def test_schedule():
  s = optim.create_schedule(2.0, total_steps=100, warmup_steps=10, end_lr_factor=0.01)
  assert float(s(0)) == 0.0
  assert float(s(5)) == pytest.approx(1.0)
  assert float(s(10)) == pytest.approx(2.0)
  assert float(s(55)) == pytest.approx(0.02 + (2.0 - 0.02) * 0.5, rel=1e-5)
  assert float(s(100)) == pytest.approx(0.02)
  vals = np.array([float(s(i)) for i in range(10, 101)])
  assert np.all(np.diff(vals) <= 1e-7)


def test_warmup_from_epochs_capped():
  _, s = optim.create_optimizer(
    _cfg(warmup_epochs=2.5), batch_size=256, total_steps=100, steps_per_epoch=4
  )
  assert float(s(10)) == pytest.approx(0.3)  # round(2.5 * 4) = 10 warmup steps
  assert float(s(9)) < 0.3
  # Warmup longer than training: capped so the peak is still reached.
  _, s = optim.create_optimizer(
    _cfg(warmup_epochs=50), batch_size=256, total_steps=20, steps_per_epoch=4
  )
  assert float(s(19)) == pytest.approx(0.3)


def test_bad_optimizer_name():
  with pytest.raises(ValueError, match=r"config\.optim\.name.*lars"):
    optim.create_optimizer(_cfg(name="adam"), batch_size=256, total_steps=10, steps_per_epoch=1)


def test_jit_update_on_flax_params():
  import flax.linen as nn

  model = nn.Sequential([nn.Dense(4), nn.LayerNorm(), nn.Dense(2)])
  params = model.init(jax.random.key(0), jnp.ones((1, 3)))["params"]
  tx, _ = optim.create_optimizer(_cfg(), batch_size=256, total_steps=10, steps_per_epoch=1)
  state = tx.init(params)
  grads = jax.tree.map(jnp.ones_like, params)
  upd, state = jax.jit(tx.update)(grads, state, params)
  assert jax.tree.structure(upd) == jax.tree.structure(params)


def test_ml_collections_config():
  ml_collections = pytest.importorskip("ml_collections")
  cfg = ml_collections.ConfigDict(
    dict(name="lars", base_lr=0.075, lr_scaling="sqrt", weight_decay=1e-6, warmup_epochs=1.0)
  )
  _, s = optim.create_optimizer(cfg, batch_size=4096, total_steps=100, steps_per_epoch=10)
  assert float(s(10)) == pytest.approx(4.8)  # missing fields take their defaults


def test_no_tensorflow_or_ml_collections_at_import():
  """These modules run on accelerator hosts without TensorFlow."""
  import os
  import pathlib
  import subprocess
  import sys

  code = (
    "import sys; import contrastive_jax.optim, contrastive_jax.models; "
    "bad = [m for m in ('tensorflow', 'ml_collections') if m in sys.modules]; assert not bad, bad"
  )
  subprocess.run(
    [sys.executable, "-c", code],
    check=True,
    cwd=pathlib.Path(__file__).resolve().parents[1],
    env={**os.environ, "JAX_PLATFORMS": "cpu"},
  )
