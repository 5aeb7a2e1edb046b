"""ViT and text Transformer: names, shapes, parameter counts, pooling, masks, dtypes, config dispatch."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from contrastive_jax import methods, optim, sharding
from contrastive_jax import step as step_lib
from contrastive_jax.evaluators import features as feats_lib
from contrastive_jax.methods import base
from contrastive_jax.models import text, vit
from tests import helpers


def _init(m, x):
  return jax.jit(m.init)(jax.random.PRNGKey(0), x)


def _apply(m, v, x):
  # jit: op-by-op eager execution of a Transformer is many times slower on CPU.
  return jax.jit(m.apply)(v, x)


def _count(params) -> int:
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(params))


def test_vit_b32_parameter_count():
  # ViT-B/32 at 224 without a head: 87,454,464 (CLIP's visual tower is this + a 768x512 projection,
  # 87.85M). Counted from shapes only (eval_shape), no memory.
  m = vit.get_encoder("vit_b32")
  shapes = jax.eval_shape(m.init, jax.random.PRNGKey(0), jnp.zeros((1, 224, 224, 3)))
  assert _count(shapes["params"]) == 87_454_464


@pytest.mark.parametrize("name,width", [("vit_ti16", 192), ("vit_s32", 384), ("vit_micro4", 32)])
def test_vit_shapes(name, width):
  m = vit.get_encoder(name)
  size = 32 if name.endswith("32") else 16
  shapes = jax.eval_shape(m.init, jax.random.PRNGKey(0), jnp.zeros((2, size, size, 3)))
  out = jax.eval_shape(m.apply, shapes, jnp.zeros((2, size, size, 3)))
  assert out.shape == (2, width) and out.dtype == jnp.float32


def test_vit_bf16_compute_f32_params_and_pooling():
  x = jax.random.uniform(jax.random.PRNGKey(1), (3, 16, 16, 3))
  f32 = vit.get_encoder("vit_micro4", pool="mean")
  bf16 = vit.get_encoder("vit_micro4", pool="mean", dtype=jnp.bfloat16)
  v = _init(f32, x)
  assert "cls" not in v["params"]  # mean pooling has no class token
  assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(_init(bf16, x)))
  a, b = _apply(f32, v, x), _apply(bf16, v, x)
  assert b.dtype == jnp.float32
  np.testing.assert_allclose(a, b, rtol=0.1, atol=0.1)
  assert not np.allclose(a, b, rtol=0, atol=1e-7)  # bf16 really computed in bf16
  cls = vit.get_encoder("vit_micro4", pool="cls")
  assert "cls" in jax.eval_shape(cls.init, jax.random.PRNGKey(0), x)["params"]
  sincos = vit.get_encoder("vit_micro4", posemb="sincos2d")
  assert "pos_embedding" not in jax.eval_shape(sincos.init, jax.random.PRNGKey(0), x)["params"]


def test_vit_rows_are_independent():
  # No batch statistics: a row's features do not depend on the rest of the batch.
  m = vit.get_encoder("vit_micro4")
  x = jax.random.uniform(jax.random.PRNGKey(2), (4, 16, 16, 3))
  v = _init(m, x)
  np.testing.assert_allclose(_apply(m, v, x)[:1], _apply(m, v, x[:1]), rtol=1e-5, atol=1e-6)


def test_vit_errors_name_the_field():
  with pytest.raises(ValueError, match="config.model.name"):
    vit.get_encoder("vit_huge14")
  with pytest.raises(ValueError, match="config.model.pool"):
    vit.get_encoder("vit_s16", pool="max")
  m = vit.get_encoder("vit_micro4")
  with pytest.raises(ValueError, match="not a multiple of the ViT patch size 4"):
    jax.eval_shape(m.init, jax.random.PRNGKey(0), jnp.zeros((1, 18, 18, 3)))


def test_build_encoder_dispatches_vit_by_name():
  config = ml_collections.ConfigDict(
    {"model": {"name": "vit_micro4", "pool": "mean", "dtype": "bfloat16"}}
  )
  enc = base.build_encoder(config)
  assert isinstance(enc, vit.ViT) and enc.pool == "mean" and enc.dtype == jnp.bfloat16


def _text_tower(dtype=jnp.float32):
  cfg = ml_collections.ConfigDict(dict(width=32, depth=2, heads=2, mlp_ratio=2.0))
  return text.from_config(cfg, vocab_size=100, context_length=8, dtype=dtype)


def test_text_tower_causal_and_pooled_at_eot():
  m = _text_tower()
  # Vocabulary of 100: id 99 plays <end_of_text> (the largest id), 0 is padding.
  tokens = jnp.array([[98, 5, 6, 99, 0, 0, 0, 0], [98, 5, 6, 7, 8, 99, 0, 0]])
  v = _init(m, tokens)
  out = _apply(m, v, tokens)
  assert out.shape == (2, 32) and out.dtype == jnp.float32
  # Anything after EOT (padding or not) cannot change the pooled feature: the mask is causal.
  changed = tokens.at[0, 4:].set(jnp.array([1, 2, 3, 4]))
  np.testing.assert_allclose(_apply(m, v, changed)[0], out[0], rtol=1e-6, atol=1e-6)
  # A shorter row (fewer padding columns) gives the same feature.
  np.testing.assert_allclose(_apply(m, v, tokens[:1, :5])[0], out[0], rtol=1e-5, atol=1e-6)
  # A token before EOT does change it.
  assert not np.allclose(_apply(m, v, tokens.at[0, 1].set(9))[0], out[0], atol=1e-4)


def test_text_tower_rejects_long_rows_and_bad_widths():
  m = _text_tower()
  v = jax.eval_shape(m.init, jax.random.PRNGKey(0), jnp.zeros((1, 8), jnp.int32))
  with pytest.raises(ValueError, match="context_length"):
    jax.eval_shape(m.apply, v, jnp.zeros((1, 9), jnp.int32))
  cfg = ml_collections.ConfigDict(dict(width=30, depth=1, heads=4, mlp_ratio=4.0))
  with pytest.raises(ValueError, match="config.text_model.width"):
    text.from_config(cfg, vocab_size=10, context_length=4, dtype=jnp.float32)


@pytest.mark.parametrize("method", ["simclr", "moco_v3"])
def test_image_methods_train_a_vit_by_name(method):
  # config.model.name = 'vit_...' is all a method needs (MoCo v3's paper setting is a ViT).
  config = helpers.tiny_config(method, **{"model.name": "vit_micro4"})
  mesh = sharding.make_mesh()
  m = methods.get_method(config, 10, total_steps=4)
  tx, schedule = optim.create_optimizer(
    config.optim, batch_size=config.batch_size, total_steps=4, steps_per_epoch=2
  )
  state = step_lib.create_state(m, tx, config, mesh, (16, 16, 3))
  assert "patch_embed" in state.params["encoder"]
  step = step_lib.make_train_step(m, tx, schedule, mesh)
  batch = sharding.global_batch(helpers.random_batch(32), mesh)
  state, metrics = step(state, batch)
  assert np.isfinite(float(metrics["loss"])) and int(state.step) == 1
  # Evaluators embed with plain jit over the mesh (explicit axes), outside shard_map.
  features = feats_lib.make_embed_step(m.embed, mesh)(state, batch["view1"])
  assert features.shape == (32, 32)
