"""Symmetric masked row log-sum-exp, lse_i = log sum_{j != i, j != partner(i)} exp(x_i . x_j).

Single-device NT-Xent's scores are the Gram matrix of x = u / sqrt(tau), u = [z1; z2] normalised,
and each row excludes itself and its positive partner(i) = (i + pair_shift) mod M. S is symmetric,
which both variants use to stay at the floor of 2 matmul-equivalents for value + gradient:

- dense: S = x x^T once; the backward builds H = dS + dS^T ELEMENTWISE from the symmetric S
  (H_ij = exp(s_ij - lse_i) g_i + exp(s_ij - lse_j) g_j, no transpose) and applies dx = H x as ONE
  product, where autodiff of x @ x.T would take two.
- tiled: only blocks I <= J are visited; each feeds the row statistics of tile I (from S) and of
  tile J (from S^T), and the backward applies H_IJ = dS_IJ + dS_JI^T with two products per block:
  0.5 (forward) + 0.5 (recompute) + 1 (gradient) matmuls of the full problem, memory O(M d + tile^2).

With a static ``shift`` (see ``losses_tiled.static_shift``) both use E = exp(s - shift): one exp per
score in the forward, and H = E * (a_i + a_j) with a_i = g_i / L_i in the backward (the dense one
saves E and needs no exp at all). See ``losses_tiled`` for the conventions (float32 statistics,
-inf for empty rows, shard_map varying types).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax

from contrastive_jax.losses_tiled import _NEG, _dot_t, _exp_scale, _like, _lse_from_sum, _pad_rows


def _valid(rid, cid, m, pair_shift):
  """Mask of (rid, cid) entries: real, not the diagonal, not the positive partner."""
  r, c = rid[:, None], cid[None, :]
  valid = (r < m) & (c < m) & (r != c)
  if pair_shift is not None:
    valid &= c != (r + pair_shift) % m
  return valid


# ----------------------------------------------------------------------------- dense


def _dense_valid(m, pair_shift):
  ids = jnp.arange(m, dtype=jnp.int32)
  return _valid(ids, ids, m, pair_shift)


def _dense_forward(x, pair_shift, shift):
  # The raw S is what the backward keeps: the mask and exp fuse into the reductions here and into
  # the one elementwise pass of the backward, so no masked copy of S is ever written.
  valid = _dense_valid(x.shape[0], pair_shift)
  s = _dot_t(x, x)
  if shift is not None:
    return _lse_from_sum(jnp.sum(jnp.where(valid, jnp.exp(s - shift), 0.0), axis=1), shift), s
  m = jnp.max(jnp.where(valid, s, _NEG), axis=1)
  l = jnp.sum(jnp.where(valid, jnp.exp(s - m[:, None]), 0.0), axis=1)
  return _lse_from_sum(l, m), s


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2))
def _dense(x, pair_shift, shift):
  return _dense_forward(x, pair_shift, shift)[0]


def _dense_fwd(x, pair_shift, shift):
  lse, s = _dense_forward(x, pair_shift, shift)
  return lse, (x, s, lse)


def _dense_bwd(pair_shift, shift, res, g):
  x, s, lse = res
  valid = _dense_valid(x.shape[0], pair_shift)
  g = g.astype(jnp.float32)
  if shift is not None:
    a = _exp_scale(lse, g, shift)
    h = jnp.where(valid, jnp.exp(s - shift), 0.0) * (a[:, None] + a[None, :])
  else:
    l0 = jnp.where(jnp.isfinite(lse), lse, 0.0)
    h = jnp.exp(s - l0[:, None]) * g[:, None] + jnp.exp(s - l0[None, :]) * g[None, :]
    h = jnp.where(valid, h, 0.0)
  return (jnp.dot(h.astype(x.dtype), x, preferred_element_type=jnp.float32).astype(x.dtype),)


_dense.defvjp(_dense_fwd, _dense_bwd)


# ----------------------------------------------------------------------------- tiled


def _block_pairs(n_tiles: int):
  i, j = jnp.triu_indices(n_tiles)  # row-major: tile i stays in cache along its row
  return i.astype(jnp.int32), j.astype(jnp.int32)


def _block(xt, i, j, tile, m, pair_shift):
  xi, xj = xt[i], xt[j]
  ar = jnp.arange(tile, dtype=jnp.int32)
  return xi, xj, _dot_t(xi, xj), _valid(i * tile + ar, j * tile + ar, m, pair_shift)


def _add_at(acc, k, v):
  return lax.dynamic_update_index_in_dim(acc, acc[k] + v, k, 0)


def _tiled_forward(x, tile, pair_shift, shift):
  m, d = x.shape
  xt = _pad_rows(x, tile).reshape(-1, tile, d)
  nt = xt.shape[0]

  def step_shift(l, ij):
    i, j = ij
    _, _, s, valid = _block(xt, i, j, tile, m, pair_shift)
    e = jnp.where(valid, jnp.exp(s - shift), 0.0)
    l = _add_at(l, i, jnp.sum(e, axis=1))
    # Row statistics of tile j from S^T (a diagonal block was fully counted above).
    return _add_at(l, j, jnp.where(i != j, jnp.sum(e, axis=0), 0.0)), None

  def step_online(carry, ij):
    mx, l = carry
    i, j = ij
    _, _, s, valid = _block(xt, i, j, tile, m, pair_shift)
    s = jnp.where(valid, s, _NEG)
    for axis, k, keep in ((1, i, True), (0, j, i != j)):
      mk, lk = mx[k], l[k]
      mk_new = jnp.maximum(mk, jnp.max(s, axis=axis))
      m_b = mk_new[:, None] if axis == 1 else mk_new[None, :]
      lk_new = lk * jnp.exp(mk - mk_new) + jnp.sum(
        jnp.where(valid, jnp.exp(s - m_b), 0.0), axis=axis
      )
      mx = lax.dynamic_update_index_in_dim(mx, jnp.where(keep, mk_new, mk), k, 0)
      l = lax.dynamic_update_index_in_dim(l, jnp.where(keep, lk_new, lk), k, 0)
    return (mx, l), None

  zero = _like(xt, xt, (nt, tile), 0.0)
  if shift is not None:
    l, _ = lax.scan(step_shift, zero, _block_pairs(nt))
    lse = _lse_from_sum(l, shift)
  else:
    (mx, l), _ = lax.scan(step_online, (_like(xt, xt, (nt, tile), _NEG), zero), _block_pairs(nt))
    lse = _lse_from_sum(l, mx)
  return lse.reshape(-1)[:m]


def _tiled_backward(x, lse, g, tile, pair_shift, shift):
  m, d = x.shape
  xt = _pad_rows(x, tile).reshape(-1, tile, d)
  nt = xt.shape[0]
  g = _pad_rows(g.astype(jnp.float32), tile)
  lse = _pad_rows(lse, tile)
  if shift is not None:
    a_t = _exp_scale(lse, g, shift).reshape(-1, tile)
  else:
    lse_t = jnp.where(jnp.isfinite(lse), lse, 0.0).reshape(-1, tile)
    g_t = g.reshape(-1, tile)

  # Column-side products use x^T: (d, tile) @ (tile, tile) runs at the plain GEMM rate on CPU,
  # where h^T @ x_i (a transposed left operand) measured ~1.7x slower per block.
  xtt = jnp.swapaxes(xt, 1, 2)

  def step(carry, ij):
    dx, dxt = carry
    i, j = ij
    xi, xj, s, valid = _block(xt, i, j, tile, m, pair_shift)
    if shift is not None:
      h = jnp.where(valid, jnp.exp(s - shift), 0.0) * (a_t[i][:, None] + a_t[j][None, :])
    else:
      p_row = jnp.exp(s - lse_t[i][:, None]) * g_t[i][:, None]
      p_col = jnp.exp(s - lse_t[j][None, :]) * g_t[j][None, :]
      h = jnp.where(valid, p_row + p_col, 0.0)
    # A diagonal block is visited once but applied twice below (as H and as H^T).
    h = (h * jnp.where(i == j, 0.5, 1.0)).astype(x.dtype)
    dx = _add_at(dx, i, jnp.dot(h, xj, preferred_element_type=jnp.float32))
    dxt = _add_at(dxt, j, jnp.dot(xtt[i], h, preferred_element_type=jnp.float32))
    return (dx, dxt), None

  init = (_like(xt, xt, xt.shape, 0.0), _like(xt, xt, xtt.shape, 0.0))
  (dx, dxt), _ = lax.scan(step, init, _block_pairs(nt))
  return (dx + jnp.swapaxes(dxt, 1, 2)).reshape(-1, d)[:m].astype(x.dtype)


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2, 3))
def _tiled(x, tile, pair_shift, shift):
  return _tiled_forward(x, tile, pair_shift, shift)


def _tiled_fwd(x, tile, pair_shift, shift):
  lse = _tiled_forward(x, tile, pair_shift, shift)
  return lse, (x, lse)


def _tiled_bwd(tile, pair_shift, shift, res, g):
  x, lse = res
  return (_tiled_backward(x, lse, g, tile, pair_shift, shift),)


_tiled.defvjp(_tiled_fwd, _tiled_bwd)


def gram_logsumexp(
  x: jax.Array,
  pair_shift: int | None = None,
  tile_size: int | None = None,
  shift: float | None = None,
) -> jax.Array:
  """lse_i = log sum_{j != i, j != (i + pair_shift) mod M} exp(x_i . x_j), exact custom gradients.

  Args:
    x: (M, d); for NT-Xent x = [z1; z2] normalised / sqrt(temperature).
    pair_shift: each row's excluded positive is (i + pair_shift) mod M; must be M / 2 so that the
      mask is symmetric (NT-Xent: N = M / 2). None excludes only the diagonal.
    tile_size: None for dense, else the block edge (M need not be a multiple of it).
    shift: optional static upper bound of the scores (``losses_tiled.static_shift``).

  Returns:
    (M,) float32; -inf for a row with no candidates.
  """
  m = x.shape[0]
  if pair_shift is not None and 2 * pair_shift != m:
    raise ValueError(f"pair_shift={pair_shift} must be half the rows ({m}) for a symmetric mask.")
  if tile_size is None:
    return _dense(x, pair_shift, shift)
  if tile_size <= 0:
    raise ValueError(f"tile_size must be a positive integer or None, got {tile_size}.")
  return _tiled(x, int(min(tile_size, m)), pair_shift, shift)
