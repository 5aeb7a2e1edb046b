"""contrastive_jax/models/cpu_fusion.py: conv inputs reach XLA:CPU as buffers, values unchanged."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from contrastive_jax.models import cpu_fusion, resnet


def _encoder_loss(model):
  def loss(variables, x):
    y, _ = model.apply(variables, x, train=True, mutable=["batch_stats"])
    return jnp.sum(jnp.tanh(y) * jnp.arange(y.shape[-1]))

  return loss


@pytest.fixture(scope="module")
def nano():
  model = resnet.get_encoder("resnet_nano")  # stem conv + one block: three convs
  x = jnp.asarray(np.random.default_rng(0).normal(size=(4, 8, 8, 3)), jnp.float32)
  return model, model.init(jax.random.key(0), x, train=False), x


def test_materialize_is_the_identity_bit_for_bit():
  x = jnp.asarray([[np.nan, -0.0, 0.0], [np.inf, -np.inf, 1e-40]], jnp.float32)
  for v in (x, x[::-1], x.astype(jnp.bfloat16)):
    out = jax.jit(cpu_fusion.materialize)(v)
    assert out.dtype == v.dtype
    np.testing.assert_array_equal(
      np.asarray(out).view(np.uint16 if v.dtype == jnp.bfloat16 else np.uint32),
      np.asarray(v).view(np.uint16 if v.dtype == jnp.bfloat16 else np.uint32),
    )
  assert cpu_fusion.materialize(jnp.zeros((0, 3))).shape == (0, 3)


def test_gradient_through_it_is_the_identity():
  x = jnp.asarray(np.random.default_rng(1).normal(size=(5, 7)), jnp.float32)
  g = jax.grad(lambda v: jnp.sum(jnp.sin(cpu_fusion.materialize(v)) * v))(x)
  np.testing.assert_array_equal(np.asarray(g), np.asarray(jnp.cos(x) * x + jnp.sin(x)))


def test_compiled_step_has_the_conditional_and_equal_values(nano, monkeypatch):
  """On: the compiled CPU program holds one conditional per conv input (none when off), and the
  loss and every gradient are the same floats either way."""
  model, variables, x = nano
  loss = _encoder_loss(model)
  results, conds = {}, {}
  for flag in ("1", "0"):
    monkeypatch.setenv(cpu_fusion.ENV, flag)
    fn = jax.jit(jax.value_and_grad(lambda v, x: loss(v, x)))  # new function: traced afresh
    hlo = fn.lower(variables, x).compile().as_text()
    conds[flag] = hlo.count("conditional(")
    results[flag] = fn(variables, x)
  n_convs = sum(
    1
    for path, _ in jax.tree_util.tree_leaves_with_path(variables["params"])
    if path[-1].key == "kernel"
  )  # the encoder's only kernels are its convs'
  assert conds["0"] == 0
  assert conds["1"] >= n_convs > 0
  for a, b in zip(jax.tree.leaves(results["1"]), jax.tree.leaves(results["0"]), strict=True):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_off_the_cpu_it_does_nothing(monkeypatch):
  monkeypatch.setattr(cpu_fusion.jax, "default_backend", lambda: "gpu")
  assert not cpu_fusion.enabled()
  # A new function each time: jax caches traces per function, and the backend is read at tracing.
  jaxpr = jax.make_jaxpr(lambda v: cpu_fusion.materialize(v))(jnp.ones((2, 3)))
  assert "cond" not in str(jaxpr)
  monkeypatch.setattr(cpu_fusion.jax, "default_backend", lambda: "cpu")
  assert cpu_fusion.enabled()
  assert "cond" in str(jax.make_jaxpr(lambda v: cpu_fusion.materialize(v))(jnp.ones((2, 3))))


def test_not_in_evaluation_nor_under_an_explicit_mesh(nano):
  model, variables, x = nano
  jaxpr = jax.make_jaxpr(lambda v, x: model.apply(v, x, train=False))(variables, x)
  assert "cond" not in str(jaxpr)  # no weight gradient in evaluation: no copies either
  mesh = jax.make_mesh((8,), ("data",), axis_types=(jax.sharding.AxisType.Explicit,))
  sharded = jax.device_put(jnp.ones((8, 4)), jax.sharding.NamedSharding(mesh, P("data")))
  with jax.set_mesh(mesh):  # slicing the sharded batch dimension would be a ShardingTypeError
    out = jax.jit(lambda v: cpu_fusion.materialize(v) * 2)(sharded)
  np.testing.assert_array_equal(np.asarray(out), 2 * np.ones((8, 4)))
