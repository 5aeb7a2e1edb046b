"""Model tests: shapes for every name/stem/norm, parameter counts, synchronised BN, online-probe isolation."""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P

from contrastive_jax.models import ContrastiveNet, MLP, get_encoder, resnet


def _count(tree):
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


def _images(b=4, s=16, seed=0):
  return jax.random.uniform(jax.random.key(seed), (b, s, s, 3))


@pytest.mark.parametrize(
  "stem,norm",
  [
    ("cifar", "batch"),
    ("cifar", "group"),
    ("cifar", "layer"),
    ("imagenet", "batch"),
    pytest.param("imagenet", "group", marks=pytest.mark.slow),
    pytest.param("imagenet", "layer", marks=pytest.mark.slow),
  ],
)
def test_micro_encoder_shapes(stem, norm):
  # Eager on purpose: for a model this small, op-by-op beats compiling on a loaded 2-core CI
  # machine.
  model = get_encoder("resnet_micro", stem=stem, norm=norm)
  x = _images(2, 32 if stem == "imagenet" else 16)
  variables = model.init(jax.random.key(0), x, train=False)
  out, upd = model.apply(variables, x, train=True, mutable=["batch_stats"])
  if norm == "batch":
    assert set(upd) == {"batch_stats"}
  else:
    # No batch statistics: per-example outputs (and gradients) do not depend on the rest of the
    # batch.
    assert "batch_stats" not in variables and not upd
    alone = model.apply(variables, x[:1], train=True, mutable=["batch_stats"])[0]
    # Batch-of-1 and batch-of-2 convolutions may take different oneDNN kernels (3e-5 relative seen);
    # a leak through batch statistics would move outputs by O(1).
    np.testing.assert_allclose(alone, out[:1], rtol=1e-4, atol=1e-5)
  assert out.shape == (2, 64) and out.dtype == jnp.float32
  assert np.all(np.isfinite(out))
  assert model.apply(variables, x, train=False).shape == (2, 64)


@pytest.mark.parametrize("stem", ["cifar", "imagenet"])
@pytest.mark.parametrize("norm", ["batch", "group", "layer"])
def test_tiny_encoder_shapes(stem, norm):
  model = get_encoder("resnet_tiny", stem=stem, norm=norm)
  x = jax.ShapeDtypeStruct((2, 32, 32, 3), jnp.float32)
  v = jax.eval_shape(functools.partial(model.init, train=False), jax.random.key(0), x)
  assert ("batch_stats" in v) == (norm == "batch")
  out = jax.eval_shape(lambda v, x: model.apply(v, x, train=True, mutable=["batch_stats"])[0], v, x)
  assert out.shape == (2, 128) and out.dtype == jnp.float32


@pytest.mark.slow
def test_resnet_tiny_forward():
  model = get_encoder("resnet_tiny")
  x = _images(2, 32)
  v = model.init(jax.random.key(0), x, train=False)
  out, _ = model.apply(v, x, train=True, mutable=["batch_stats"])
  assert out.shape == (2, 128) and np.all(np.isfinite(out))


def test_resnet_tiny_param_count():
  v = jax.eval_shape(
    lambda: get_encoder("resnet_tiny").init(jax.random.key(0), _images(1, 32), train=False)
  )
  assert 0.25e6 < _count(v["params"]) < 0.35e6


@pytest.mark.parametrize(
  "name,stem,width,feat,params",
  [
    ("resnet18", "cifar", 1.0, 512, 11.17e6),
    ("resnet34", "cifar", 1.0, 512, 21.28e6),
    ("resnet50", "cifar", 1.0, 2048, 23.50e6),
    ("resnet50", "imagenet", 1.0, 2048, 23.51e6),
    ("resnet50", "imagenet", 2.0, 4096, 93.9e6),
  ],
)
def test_large_encoder_shapes_and_params(name, stem, width, feat, params):
  model = get_encoder(name, stem=stem, width=width)
  x = jax.ShapeDtypeStruct((2, 64, 64, 3), jnp.float32)
  v = jax.eval_shape(functools.partial(model.init, train=False), jax.random.key(0), x)
  assert _count(v["params"]) == pytest.approx(params, rel=0.01)
  out = jax.eval_shape(functools.partial(model.apply, train=False), v, x)
  assert out.shape == (2, feat)


def test_bf16_compute_f32_params():
  model = get_encoder("resnet_micro", dtype=jnp.bfloat16)
  x = _images(2, 16)
  v = model.init(jax.random.key(0), x, train=False)
  assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(v["params"]))
  out, _ = model.apply(v, x, train=True, mutable=["batch_stats"])
  assert out.dtype == jnp.float32 and np.all(np.isfinite(out))


def test_zero_init_residual():
  v = get_encoder("resnet_micro").init(jax.random.key(0), _images(1, 16), train=False)["params"]
  np.testing.assert_array_equal(v["stage1_block1"]["norm2"]["bn"]["scale"], 0.0)
  np.testing.assert_array_equal(v["stage1_block1"]["norm1"]["bn"]["scale"], 1.0)
  v = get_encoder("resnet_micro", zero_init_residual=False).init(
    jax.random.key(0), _images(1, 16), train=False
  )["params"]
  np.testing.assert_array_equal(v["stage1_block1"]["norm2"]["bn"]["scale"], 1.0)


def test_bottleneck_block():
  block = resnet.Bottleneck(
    8,
    strides=2,
    norm=functools.partial(resnet.Norm, kind="group"),
    conv=functools.partial(nn.Conv, use_bias=False),
  )
  x = _images(2, 8)
  v = block.init(jax.random.key(0), x, train=False)
  assert block.apply(v, x, train=False).shape == (2, 4, 4, 32)


def test_unknown_names():
  with pytest.raises(ValueError, match=r"config\.model\.name.*resnet18.*resnet_tiny"):
    get_encoder("resnet19")
  with pytest.raises(ValueError, match=r"config\.model\.name"):
    get_encoder("ResNet")  # the class, not a builder
  with pytest.raises(ValueError, match=r"config\.model\.norm"):
    get_encoder("resnet_micro", norm="instance")
  with pytest.raises(ValueError, match=r"config\.model\.stem"):
    get_encoder("resnet_micro", stem="vit")


def test_mlp_heads():
  x = jax.random.normal(jax.random.key(0), (6, 10))
  head = MLP(hidden_dims=(16, 16), out_dim=4)
  v = head.init(jax.random.key(1), x, train=False)
  out, _ = head.apply(v, x, train=True, mutable=["batch_stats"])
  assert out.shape == (6, 4)
  # The last BN has statistics but no learned scale/offset, and the Dense before it no bias.
  assert "out_bn" in v["batch_stats"] and "out_bn" not in v["params"]
  assert set(v["params"]["out"]) == {"kernel"}
  # Last BN without affine: each output column is standardised over the batch.
  np.testing.assert_allclose(out.mean(0), 0.0, atol=1e-5)
  linear = MLP(hidden_dims=(), out_dim=3, use_bn=False)
  v = linear.init(jax.random.key(1), x, train=False)
  assert "batch_stats" not in v and set(v["params"]) == {"out"}
  np.testing.assert_allclose(
    linear.apply(v, x, train=True),
    x @ v["params"]["out"]["kernel"] + v["params"]["out"]["bias"],
    rtol=1e-5,
    atol=1e-6,
  )


def _net(num_classes=10, norm="batch", predictor=True):
  return ContrastiveNet(
    encoder=get_encoder("resnet_micro", norm=norm),
    projector=MLP((32,), 16, use_bn=norm == "batch"),
    predictor=MLP((32,), 16, last_bn=False, use_bn=norm == "batch") if predictor else None,
    num_classes=num_classes,
  )


def test_contrastive_net_outputs():
  net = _net()
  x = _images(4, 16)
  v = net.init(jax.random.key(0), x, train=False)
  assert set(v["params"]) == {"encoder", "projector", "predictor", "probe"}
  out, _ = net.apply(v, x, train=True, mutable=["batch_stats"])
  assert out["features"].shape == (4, 64) and out["proj"].shape == (4, 16)
  assert out["pred"].shape == (4, 16) and out["probe_logits"].shape == (4, 10)
  h = net.apply(v, x, method=ContrastiveNet.embed)
  np.testing.assert_allclose(h, net.apply(v, x, train=False)["features"], rtol=1e-6)
  bare = ContrastiveNet(encoder=get_encoder("resnet_micro", norm="layer"), projector=None)
  vb = bare.init(jax.random.key(0), x, train=False)
  ob = bare.apply(vb, x, train=True)
  assert ob["proj"] is None and ob["pred"] is None and ob["probe_logits"] is None


@pytest.mark.parametrize("norm", ["batch", pytest.param("layer", marks=pytest.mark.slow)])
def test_probe_never_changes_encoder(norm):
  net = _net(norm=norm)
  x = _images(4, 16)
  labels = jnp.array([0, 1, 2, 3])
  v = net.init(jax.random.key(0), x, train=False)

  def loss(params, with_probe):
    out = net.apply({**v, "params": params}, x, train=True, mutable=["batch_stats"])[0]
    l = jnp.sum(out["pred"] ** 2) + jnp.sum(out["proj"])
    if with_probe:
      logp = jax.nn.log_softmax(out["probe_logits"])
      l = l + 100.0 * -jnp.mean(jnp.take_along_axis(logp, labels[:, None], 1))
    return l

  grad = jax.jit(jax.grad(loss), static_argnums=1)
  g0 = grad(v["params"], False)
  g1 = grad(v["params"], True)
  for k in ("encoder", "projector", "predictor"):
    jax.tree.map(np.testing.assert_array_equal, g0[k], g1[k])
  assert float(jnp.abs(g1["probe"]["kernel"]).sum()) > 0
  assert float(jnp.abs(g0["probe"]["kernel"]).sum()) == 0


def test_synchronised_batchnorm_matches_single_device():
  assert jax.device_count() == 8
  mesh = jax.make_mesh((8,), ("data",))
  sync = ContrastiveNet(
    encoder=get_encoder("resnet_micro", bn_axis_name="data"),
    projector=MLP((16,), 8, bn_axis_name="data"),
  )
  single = ContrastiveNet(encoder=get_encoder("resnet_micro"), projector=MLP((16,), 8))
  x = _images(16, 8, seed=3)
  v = single.init(jax.random.key(0), x, train=False)
  # Non-trivial running averages so the momentum update is exercised.
  v = {**v, "batch_stats": jax.tree.map(lambda s: s + 0.1, v["batch_stats"])}

  def fwd(model, variables, images):
    out, upd = model.apply(variables, images, train=True, mutable=["batch_stats"])
    return out["proj"], out["features"], upd["batch_stats"]

  sharded = jax.jit(
    jax.shard_map(
      functools.partial(fwd, sync),
      mesh=mesh,
      in_specs=(P(), P("data")),
      out_specs=(P("data"), P("data"), P()),
    )
  )
  replicated, by_row = NamedSharding(mesh, P()), NamedSharding(mesh, P("data"))
  v, x = jax.device_put(v, replicated), jax.device_put(x, by_row)
  proj_n, feat_n, stats_n = sharded(v, x)
  proj_1, feat_1, stats_1 = jax.jit(functools.partial(fwd, single))(v, x)
  np.testing.assert_allclose(feat_n, feat_1, rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(proj_n, proj_1, rtol=1e-4, atol=1e-4)
  jax.tree.map(
    lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6), stats_n, stats_1
  )
  # Without the axis name, per-device statistics differ from the global ones (the test has teeth).
  local = jax.jit(
    jax.shard_map(
      functools.partial(fwd, single),
      mesh=mesh,
      in_specs=(P(), P("data")),
      out_specs=(P("data"), P("data"), P("data")),
      check_vma=False,
    )
  )
  _, feat_local, _ = local(v, x)
  assert not np.allclose(feat_local, feat_1, atol=1e-3)

  # Eval mode inside shard_map needs no collectives and uses the running averages.
  ev = jax.jit(
    jax.shard_map(
      lambda vv, im: sync.apply(vv, im, method=ContrastiveNet.embed),
      mesh=mesh,
      in_specs=(P(), P("data")),
      out_specs=P("data"),
    )
  )
  np.testing.assert_allclose(
    ev(v, x), single.apply(v, x, method=ContrastiveNet.embed), rtol=1e-4, atol=1e-5
  )
