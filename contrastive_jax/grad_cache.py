"""Gradient-cache train step (GradCache, Gao et al. 2021, "Scaling Deep Contrastive Learning Batch Size
under Memory Limited Setup"): a contrastive batch far larger than the activations that fit in
memory.

Selected by `config.grad_cache_chunk` (rows of this device's shard per chunk; 0 = the plain step).
Inside the shard_map body, on every device:

  1. embed: a lax.scan over the shard's chunks of `method.embed_for_loss`, outside autodiff, so only
     the embeddings (rows x d) are kept, never the activations;
  2. loss: `method.loss_from_embeddings` on the shard's embeddings (the global loss, with all_gather
     inside) and its gradient g_e w.r.t. THIS device's embeddings; the transpose of all_gather
     (psum_scatter) already brings in the terms where other devices' anchors use our embeddings as
     candidates;
  3. backward: a lax.scan over the chunks that re-runs each chunk's forward under jax.vjp and pulls
     back its slice of g_e, accumulating the parameter gradient; one psum over 'data' at the end.

Peak memory is the activations of ONE chunk (plus the O(N d) embeddings and the loss), at the price
of a second forward (about 1.3-1.4x the plain step's compute).

Exactness. Without batch statistics (model.norm 'group' or 'layer', head.use_bn False) the gradient
equals the full-batch gradient up to float32 summation order (tests/test_grad_cache.py). With
BatchNorm, each chunk is normalised with ITS statistics (synchronised over devices, so over chunk x
devices x 2 views images): this is BN with a smaller batch, not the global BN of the plain step.
What changes:
  - normalisation: per-chunk mean/variance in the forward, and the gradient through the statistics
    only couples rows of the same chunk;
  - both views of a row are always in the same chunk (chunks are slices of rows), so a positive pair
    shares statistics, like in the plain step; negatives from other chunks were normalised
    differently, which is the "BN leaks batch information" channel of Chen et al. 2020 (Sec. B.3)
    restricted to a chunk;
  - running statistics: every chunk starts from the same state.batch_stats and the step keeps the
    MEAN of the per-chunk updates (one EMA update per step, as in the plain step): the running mean
    then equals the global-batch mean exactly; the running variance is the mean within-chunk
    variance (it misses the between-chunk spread, small for random chunks). docs/batch_scaling.md
    reports the measured accuracy effect.
"""

import jax
import jax.numpy as jnp

from contrastive_jax import sharding


def check_chunk(method, chunk: int, local_batch: int) -> int:
  """Number of chunks per device; clear errors for a method or a chunk size that cannot work."""
  if method.embed_for_loss is None or method.loss_from_embeddings is None:
    raise ValueError(
      f"config.grad_cache_chunk={chunk} needs a method with embed_for_loss and loss_from_embeddings "
      f"(see methods/base.py); {method.name!r} has none. Set config.grad_cache_chunk=0."
    )
  if chunk <= 0 or local_batch % chunk:
    raise ValueError(
      f"config.grad_cache_chunk={chunk} must divide the per-device batch ({local_batch} = "
      f"config.batch_size / {jax.device_count()} devices); e.g. "
      f"--config.grad_cache_chunk={_largest_divisor_at_most(local_batch, max(chunk, 1))}."
    )
  return local_batch // chunk


def _largest_divisor_at_most(n: int, k: int) -> int:
  return max(d for d in range(1, min(n, k) + 1) if n % d == 0)


def _split(tree, k: int):
  """(n, ...) leaves -> (k, n // k, ...): chunk i holds rows [i c, (i + 1) c)."""
  return jax.tree.map(lambda x: x.reshape(k, x.shape[0] // k, *x.shape[1:]), tree)


def _merge(tree):
  return jax.tree.map(lambda x: x.reshape(x.shape[0] * x.shape[1], *x.shape[2:]), tree)


def cached_grads(
  method,
  params,
  state,
  batch,
  rng,
  step,
  chunk: int,
  axis_name=sharding.DATA_AXIS,
  unroll: bool | None = None,
):
  """(loss, aux, grads) of method's global loss, computed chunk by chunk (call inside shard_map).

  Args:
    method: a Method with embed_for_loss and loss_from_embeddings.
    params: replicated parameters to differentiate.
    state: the TrainState (batch_stats, extras).
    batch: this device's shard, dict of (n, ...) arrays.
    rng: this device's key for the step; chunk i gets fold_in(rng, i) in both passes.
    step: the step counter.
    chunk: rows per chunk; must divide n.
    axis_name: the mesh axis of the batch.
    unroll: unroll the two chunk loops (default: on CPU only, where XLA runs convolutions inside a
      while loop about 30x slower than straight-line code). Unrolled or not, an optimization_barrier
      makes chunk i+1 start only after chunk i is done, so at most one chunk's activations are live.

  Returns:
    loss (global, invariant), aux ({'metrics', 'extras_update', 'batch_stats'}), grads (invariant: the
    gradient of the global loss, already summed over devices).
  """
  n = jax.tree.leaves(batch)[0].shape[0]
  k = check_chunk(method, chunk, n)
  if unroll is None:
    unroll = jax.default_backend() == "cpu"
  chunks = _split(batch, k)
  keys = jax.vmap(lambda i: jax.random.fold_in(rng, i))(jnp.arange(k))

  def embed(p, xs):
    rows, key = xs
    return method.embed_for_loss(p, state, rows, key)

  # 1. Embeddings only: outside autodiff, so no activations are kept across chunks. The token (one
  # element of the previous chunk's output) orders the chunks.
  def forward(token, xs):
    xs, token = jax.lax.optimization_barrier((xs, token))
    emb_c, stats_c = embed(params, xs)
    return jax.tree.leaves(emb_c)[0].reshape(-1)[0].astype(jnp.float32), (emb_c, stats_c)

  token0 = jax.lax.pcast(jnp.zeros((), jnp.float32), axis_name, to="varying")
  _, (emb_chunks, stats_chunks) = jax.lax.scan(
    forward, token0, (chunks, keys), unroll=k if unroll else 1
  )
  emb = _merge(emb_chunks)
  new_stats = jax.tree.map(lambda s: jnp.mean(s, axis=0), stats_chunks)

  # 2. The global loss and its gradient w.r.t. this device's embeddings.
  def loss_of(e):
    return method.loss_from_embeddings(e, batch, state, rng, step)

  (loss, aux), g_emb = jax.value_and_grad(loss_of, has_aux=True)(emb)
  g_chunks = _split(g_emb, k)

  # 3. Re-run each chunk's forward under vjp. Differentiating w.r.t. a device-varying copy of the
  # params keeps per-chunk gradients local (no all-reduce per chunk); one psum at the end.
  params_v = jax.tree.map(lambda p: jax.lax.pcast(p, axis_name, to="varying"), params)

  def backward(acc, xs):
    xs, acc = jax.lax.optimization_barrier((xs, acc))
    rows, key, g = xs
    _, pull = jax.vjp(lambda p: embed(p, (rows, key))[0], params_v)
    (gp,) = pull(g)
    return jax.tree.map(jnp.add, acc, gp), None

  zeros = jax.tree.map(jnp.zeros_like, params_v)
  grads_v, _ = jax.lax.scan(backward, zeros, (chunks, keys, g_chunks), unroll=k if unroll else 1)
  grads = jax.lax.psum(grads_v, axis_name)
  return loss, {**aux, "batch_stats": new_stats}, grads


def make_grad_fn(method, chunk: int, unroll: bool | None = None):
  """The `grad_fn` hook of step.make_train_step: the gradient from `cached_grads`, so the cached
  step shares the plain step's update, metrics and non-finite guard."""

  def grad_fn(state, batch, rng):
    _, aux, grads = cached_grads(
      method, state.params, state, batch, rng, state.step, chunk, unroll=unroll
    )
    return aux, grads

  return grad_fn
