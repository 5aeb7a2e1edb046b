"""The one step builder: jit(shard_map(step)) over the mesh, and the replicated initial state.

Pre-training (train.py), fine-tuning (protocols/finetune.py) and the gradient cache (grad_cache.py,
through the `grad_fn` hook) all use this one update path: the same optimiser update, post_update,
metrics and non-finite guard. Nothing here imports the loop.
"""

import jax
import jax.numpy as jnp
import optax
from jax.sharding import PartitionSpec as P

from contrastive_jax import nonfinite, sharding
from contrastive_jax.methods import base
from contrastive_jax.state import TrainState


def default_grad_fn(method):
  """`grad_fn(state, batch, rng) -> (aux, grads)`: method.loss_fn differentiated in one pass."""

  def grad_fn(state, batch, rng):
    def loss_fn(params):
      return method.loss_fn(params, state, batch, rng, state.step)

    (_, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    return aux, grads

  return grad_fn


def make_train_step(method, tx, schedule, mesh, grad_fn=None):
  """jit(shard_map(step)) : (state, global batch) -> (state, metrics); state donated.

  `grad_fn(state, batch, rng) -> (aux, grads)` computes the gradient inside the per-device body; the
  default differentiates method.loss_fn in one pass (grad_cache.make_grad_fn passes its own).
  `method.post_update` may return new extras, or `base.Updated(params, extras)` when it also
  changes parameters after the optimiser (e.g. CLIP clamps its temperature).
  """
  grad_fn = grad_fn or default_grad_fn(method)

  def step_body(state: TrainState, batch):
    # Runs at trace time: a data source that lacks what the method declared fails before compiling.
    missing = [k for k in method.batch_keys if k not in batch]
    if missing:
      raise ValueError(
        f"config.method={method.name!r} reads batch keys {list(method.batch_keys)} but the data "
        f"gives {sorted(batch)} (missing {missing}). Image-text methods need an image-text source "
        f"(e.g. --config.text.source=templates); image methods need --config.text.source="
        "."
      )
    rng = jax.random.fold_in(state.rng, state.step)
    rng = jax.random.fold_in(rng, jax.lax.axis_index(sharding.DATA_AXIS))
    aux, grads = grad_fn(state, batch, rng)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    out = method.post_update(state.extras, params, aux.get("extras_update"), state.step)
    params, extras = (out.params, out.extras) if isinstance(out, base.Updated) else (params, out)
    m = dict(aux["metrics"])
    m["learning_rate"] = schedule(state.step)
    m["grad_norm"] = optax.global_norm(grads)
    new_state = state.replace(
      step=state.step + 1,
      params=params,
      batch_stats=aux["batch_stats"],
      opt_state=opt_state,
      extras=extras,
    )
    return new_state, m

  body = jax.shard_map(
    nonfinite.guard(step_body),
    mesh=mesh,
    in_specs=(P(), P(sharding.DATA_AXIS)),
    out_specs=(P(), P()),
  )
  return jax.jit(body, donate_argnums=0)


def create_state(method, tx, config, mesh, image_shape) -> TrainState:
  """Shapes first (eval_shape), then the real, replicated state (jit with out_shardings)."""

  def init_fn(rng):
    init_rng, state_rng = jax.random.split(rng)
    dummy = jnp.zeros((2, *image_shape), jnp.float32)
    v = method.init(init_rng, dummy)
    return TrainState(
      step=jnp.zeros((), jnp.int32),
      params=v["params"],
      batch_stats=v["batch_stats"],
      opt_state=tx.init(v["params"]),
      extras=v["extras"],
      rng=state_rng,
    )

  rng = jax.random.PRNGKey(config.seed)  # raw uint32 key: checkpoints as a plain array
  abstract = jax.eval_shape(init_fn, rng)
  shardings = jax.tree.map(lambda _: sharding.replicated(mesh), abstract)
  init = jax.jit(init_fn, out_shardings=shardings)
  if isinstance(rng, jax.core.Tracer):  # under a trace (pretrained.py's eval_shape): no compiling
    return init(rng)
  return init.lower(rng).compile(compiler_options=init_compiler_options(mesh))(rng)


def init_compiler_options(mesh) -> dict:
  """XLA options for compiling a one-off initialisation on `mesh`'s platform.

  On CPU, LLVM at its default -O2 spends most of a small run's start-up on the init: jax's
  partitionable threefry (its default) unrolls into code LLVM optimises slowly, 21.2 s for the
  micro ResNet's MoCo v3 state against 4.0 s at -O0 (2-core CPU). The init runs once, so -O0 costs
  nothing; the threefry bits are integers (exact at any level) and only the float transforms of
  them may round differently in the last bit. GPU and TPU compile as usual.
  """
  if mesh.devices.flat[0].platform == "cpu":
    return {"xla_backend_optimization_level": 0}
  return {}
