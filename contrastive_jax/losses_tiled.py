"""Masked row log-sum-exp kernels behind the InfoNCE-family losses, dense and tiled, exact gradients.

The losses (see ``losses.py``) write each anchor's term relative to its positive,

    loss_i = softplus(lse_i - pos_i),   lse_i = log sum_{j not excluded} exp(s_ij),

where the positive (and the self-similarity) are EXCLUDED from ``lse``. This is -log softmax of the
positive without cancellation: when the positive dominates, lse_i - pos_i is very negative and
softplus returns exp(lse_i - pos_i) to full relative precision, where the textbook
``logsumexp(all) - pos`` subtracts two nearly equal numbers. The positive's gradient is then
-sigmoid(lse_i - pos_i), not the cancelling softmax - 1. These kernels supply ``lse``.

Two problems:
- ``row_logsumexp(rows, cols, exclude)``: s = rows @ cols.T (MoCo/CLIP, and NT-Xent under
  shard_map, where rows are this device's anchors and cols all global candidates).
- ``gram_logsumexp(x, pair_shift)``: s = x @ x.T (single-device NT-Xent, x = u / sqrt(tau)). S is
  symmetric, so both dense and tiled variants need only 2 matmul-equivalents for value + gradient
  (the floor): dense forms S once and applies dx = (dS + dS^T) x as ONE product (dS + dS^T is built
  elementwise from the symmetric S, no transpose); tiled visits only blocks I <= J, each feeding the
  row statistics of tile I (from S) and of tile J (from S^T), and its backward applies
  H = dS_IJ + dS_JI^T with two products per block: 0.5 + 0.5 (recompute) + 1 matmuls.

Tiled variants never form S: an online log-sum-exp over (tile x tile) blocks in the forward
(FlashAttention, Dao et al. 2022) and a ``jax.custom_vjp`` backward that recomputes each block once
and accumulates both gradient products in the same pass. Memory O(M d + tile^2).

``shift``: a static upper bound c of every score with all scores in [c - SHIFT_RANGE, c] (cosine
logits: c = 1 / tau for tau >= 2 / SHIFT_RANGE). Then exp(s - c) is a normal float32 for every
entry and replaces the running maximum: one exp per score instead of a max pass plus two exps in
the symmetric forward, and the symmetric backward is exp(s - c) * (a_i + a_j), a_i = g_i / L_i (one
exp, no per-row shift). Without it the kernels use the running maximum, valid for any scores.

Statistics and accumulators are float32 whatever the input dtype; block matmuls run in the input
dtype with float32 accumulation. No collectives inside: under ``shard_map`` the caller all-gathers
``cols`` outside, so the all_gather's transpose returns column gradients to their owners.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax

# Finite stand-in for -inf inside masked maxima: exp(_NEG - m) underflows to exactly 0 and never
# produces inf - inf = NaN.
_NEG = -1e30
# exp(-64) ~ 1.6e-28 is far above float32's smallest normal (~e^-87), so with scores in
# [c - 64, c] no term is flushed or denormal, and exp(c - lse) in the backward stays below e^64.
SHIFT_RANGE = 64.0


def static_shift(bound) -> float | None:
  """The static ``shift`` for scores known to lie in [-bound, bound], or None if none is safe."""
  try:
    bound = float(bound)
  except (TypeError, jax.errors.ConcretizationTypeError):
    return None  # traced (e.g. a learnable logit scale): use the running maximum
  return bound if 0 < 2 * bound <= SHIFT_RANGE else None


def _pad_rows(x: jax.Array, multiple: int) -> jax.Array:
  pad = (-x.shape[0]) % multiple
  if pad == 0:
    return x
  return jnp.pad(x, [(0, pad)] + [(0, 0)] * (x.ndim - 1))


def _like(ref_a: jax.Array, ref_b: jax.Array, shape, value: float) -> jax.Array:
  """float32 constant whose shard_map varying-axes type is the union of both references.

  Loop carries must keep one type across iterations; a plain jnp.full would be device-invariant
  while the blocks computed from per-device rows are device-varying.
  """
  zero = (
    jnp.zeros_like(ref_a.reshape(-1)[:1], jnp.float32)
    + jnp.zeros_like(ref_b.reshape(-1)[:1], jnp.float32)
  )[0]
  return jnp.full(shape, value, jnp.float32) + zero


def _dot_t(a, b):
  """a @ b.T with float32 accumulation."""
  return lax.dot_general(a, b, (((1,), (1,)), ((), ())), preferred_element_type=jnp.float32)


def _lse_from_sum(l, base):
  """base + log(l); exactly -inf for a row with no candidates (its softplus term is then 0)."""
  return jnp.where(l > 0, base + jnp.log(jnp.where(l > 0, l, 1.0)), -jnp.inf)


def _exp_scale(lse, g, shift):
  """a_i = g_i * exp(shift - lse_i) = g_i / L_i; 0 for empty rows (lse = -inf, g = 0)."""
  return jnp.where(jnp.isfinite(lse), g * jnp.exp(shift - jnp.where(jnp.isfinite(lse), lse, 0)), 0)


# ----------------------------------------------------------------------------- rows x cols


def _valid(col_ids, exclude, n_cols):
  """(rows, cols) mask: real column and not one of the row's excluded columns."""
  valid = col_ids[None, :] < n_cols
  for e in range(exclude.shape[1]):
    valid &= col_ids[None, :] != exclude[:, e, None]
  return valid


def _block(rows_t, cols_t, ex_t, col0, n_cols):
  s = _dot_t(rows_t, cols_t)
  return s, _valid(col0 + jnp.arange(cols_t.shape[0], dtype=jnp.int32), ex_t, n_cols)


def _tiles(rows, cols, exclude, tile):
  r = _pad_rows(rows, tile).reshape(-1, tile, rows.shape[1])
  c = _pad_rows(cols, tile).reshape(-1, tile, cols.shape[1])
  ex = _pad_rows(exclude, tile).reshape(-1, tile, exclude.shape[1])
  return r, c, ex


def _forward(rows, cols, exclude, tile, shift):
  m, n_cols = rows.shape[0], cols.shape[0]
  r, c, ex = _tiles(rows, cols, exclude, tile)

  def row_tile(args):
    rows_t, ex_t = args

    def col_step(j, carry):
      s, valid = _block(rows_t, c[j], ex_t, j * tile, n_cols)
      if shift is not None:
        return carry + jnp.sum(jnp.where(valid, jnp.exp(s - shift), 0.0), axis=1)
      m_run, l_run = carry
      s = jnp.where(valid, s, _NEG)
      m_new = jnp.maximum(m_run, jnp.max(s, axis=1))
      p = jnp.where(valid, jnp.exp(s - m_new[:, None]), 0.0)
      return m_new, l_run * jnp.exp(m_run - m_new) + jnp.sum(p, axis=1)

    zero = _like(rows_t, c, (tile,), 0.0)
    if shift is not None:
      return _lse_from_sum(lax.fori_loop(0, c.shape[0], col_step, zero), shift)
    m_run, l_run = lax.fori_loop(0, c.shape[0], col_step, (_like(rows_t, c, (tile,), _NEG), zero))
    return _lse_from_sum(l_run, m_run)

  return lax.map(row_tile, (r, ex)).reshape(-1)[:m]


def _backward(rows, cols, exclude, lse, g, tile):
  m, d = rows.shape
  n_cols = cols.shape[0]
  r, c, ex = _tiles(rows, cols, exclude, tile)
  # Padded rows get zero cotangent, so their (finite) recomputed probabilities contribute nothing.
  lse_t = _pad_rows(jnp.where(jnp.isfinite(lse), lse, 0.0), tile).reshape(-1, tile)
  g_t = _pad_rows(g.astype(jnp.float32), tile).reshape(-1, tile)

  # Column gradients as rows^T @ dS, (d, tile) @ (tile, tile): the plain GEMM shape, where
  # dS^T @ rows (a transposed left operand) measured ~1.7x slower per block on CPU.
  r_t = jnp.swapaxes(r, 1, 2)

  def row_step(dcols_t, i):
    rows_t, ex_t, lse_i, g_i = r[i], ex[i], lse_t[i], g_t[i]

    def col_step(drows_i, j):
      cols_t = c[j]
      s, valid = _block(rows_t, cols_t, ex_t, j * tile, n_cols)
      ds = (jnp.where(valid, jnp.exp(s - lse_i[:, None]), 0.0) * g_i[:, None]).astype(rows.dtype)
      drows_i = drows_i + jnp.dot(ds, cols_t, preferred_element_type=jnp.float32)
      return drows_i, jnp.dot(r_t[i], ds, preferred_element_type=jnp.float32)

    # Column-tile gradients leave the inner loop as stacked outputs and are added to the carry once
    # per row tile (updating the carry in place per block would copy it on some backends).
    drows_i, dc = lax.scan(
      col_step, _like(rows_t, c, (tile, d), 0.0), jnp.arange(c.shape[0], dtype=jnp.int32)
    )
    return dcols_t + dc, drows_i

  c_t_shape = (c.shape[0], d, tile)
  dcols_t, drows = lax.scan(
    row_step, _like(r, c, c_t_shape, 0.0), jnp.arange(r.shape[0], dtype=jnp.int32)
  )
  drows = drows.reshape(-1, d)[:m].astype(rows.dtype)
  dcols = jnp.swapaxes(dcols_t, 1, 2).reshape(-1, d)[:n_cols].astype(cols.dtype)
  return drows, dcols


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4))
def _row_lse(rows, cols, exclude, tile, shift):
  return _forward(rows, cols, exclude, tile, shift)


def _row_lse_fwd(rows, cols, exclude, tile, shift):
  lse = _forward(rows, cols, exclude, tile, shift)
  return lse, (rows, cols, exclude, lse)


def _row_lse_bwd(tile, shift, res, g):
  del shift  # the backward divides by the saved partition sums through lse either way
  rows, cols, exclude, lse = res
  drows, dcols = _backward(rows, cols, exclude, lse, g, tile)
  return drows, dcols, None


_row_lse.defvjp(_row_lse_fwd, _row_lse_bwd)


def _dense_row_lse(rows, cols, exclude):
  valid = _valid(jnp.arange(cols.shape[0], dtype=jnp.int32), exclude, cols.shape[0])
  s = jnp.where(valid, _dot_t(rows, cols), _NEG)
  m = lax.stop_gradient(jnp.max(s, axis=1, keepdims=True))
  l = jnp.sum(jnp.where(valid, jnp.exp(s - m), 0.0), axis=1)
  return _lse_from_sum(l, m[:, 0])


def row_logsumexp(
  rows: jax.Array,
  cols: jax.Array,
  exclude: jax.Array,
  tile_size: int | None = None,
  shift: float | None = None,
) -> jax.Array:
  """Masked row log-sum-exp of rows @ cols.T with exact gradients, dense or tiled.

  Args:
    rows: (M, d) anchors, already multiplied by the logit scale (1 / temperature).
    cols: (C, d) candidates (this device's view of ALL candidates; no collectives inside).
    exclude: (M, k) int, columns left out of row i's sum (self, positive); -1 for none.
    tile_size: None for dense (autodiff through the (M, C) scores), else the block edge (M and C
      need not be multiples of it).
    shift: optional static upper bound of the scores (see module docstring), tiled only.

  Returns:
    (M,) float32, lse_i = log sum_{j not in exclude[i]} exp(rows_i . cols_j); -inf if empty.
  """
  if rows.dtype != cols.dtype:
    dtype = jnp.promote_types(rows.dtype, cols.dtype)
    rows, cols = rows.astype(dtype), cols.astype(dtype)
  exclude = exclude.astype(jnp.int32).reshape(rows.shape[0], -1)
  if tile_size is None:
    return _dense_row_lse(rows, cols, exclude)
  if tile_size <= 0:
    raise ValueError(f"tile_size must be a positive integer or None, got {tile_size}.")
  tile = int(min(tile_size, max(rows.shape[0], cols.shape[0])))
  return _row_lse(rows, cols, exclude, tile, shift)
