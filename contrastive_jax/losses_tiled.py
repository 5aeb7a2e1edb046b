"""Memory-efficient masked row log-sum-exp: the kernel behind the tiled contrastive losses.

The InfoNCE family (NT-Xent, MoCo InfoNCE, CLIP) only needs, per anchor row i, the log-partition

    lse_i = log sum_{j < C, j != self_i} exp(<rows_i, cols_j>)

(``rows`` already carry the 1/temperature or logit scale) plus one positive logit that the caller
computes as a cheap row-wise dot product. ``row_logsumexp`` computes ``lse`` without ever forming
the (M, C) similarity matrix: an online log-sum-exp over (tile x tile) blocks in the forward pass
(as in FlashAttention, Dao et al. 2022), and a ``jax.custom_vjp`` whose backward recomputes each
block once and accumulates BOTH products of that block in the same pass:

    dS_ij  = g_i * exp(s_ij - lse_i)          (masked entries 0)
    drows  = dS @ cols,     dcols = dS^T @ rows

so the backward costs one similarity recompute plus the two gradient products, and memory is
O((M + C) * d + tile^2). Softmax statistics and accumulators are float32 whatever the input dtype;
the block matmuls run in the input dtype with float32 accumulation.

The kernel holds no collectives: under ``shard_map`` the caller all-gathers ``cols`` OUTSIDE it, so
the all_gather's transpose (a psum_scatter) returns the column gradients to the devices that own
them.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax

# Finite stand-in for -inf: exp(_NEG - m) underflows to exactly 0 and never produces inf - inf =
# NaN.
_NEG = -1e30


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


def _block(rows_t, cols_t, self_t, row0, col0, n_cols):
  """Scores and validity mask of one (tile x tile) block."""
  s = lax.dot_general(rows_t, cols_t, (((1,), (1,)), ((), ())), preferred_element_type=jnp.float32)
  col_ids = col0 + jnp.arange(cols_t.shape[0], dtype=jnp.int32)
  valid = (col_ids[None, :] < n_cols) & (col_ids[None, :] != self_t[:, None])
  return s, valid


def _forward(rows, cols, self_col, tile):
  m, n_cols = rows.shape[0], cols.shape[0]
  r = _pad_rows(rows, tile).reshape(-1, tile, rows.shape[1])
  c = _pad_rows(cols, tile).reshape(-1, tile, cols.shape[1])
  sc = _pad_rows(self_col, tile).reshape(-1, tile)
  n_col_tiles = c.shape[0]

  def row_tile(args):
    i, rows_t, self_t = args

    def col_step(j, carry):
      m_run, l_run = carry
      s, valid = _block(rows_t, c[j], self_t, i * tile, j * tile, n_cols)
      s = jnp.where(valid, s, _NEG)
      m_new = jnp.maximum(m_run, jnp.max(s, axis=1))
      p = jnp.where(valid, jnp.exp(s - m_new[:, None]), 0.0)
      l_new = l_run * jnp.exp(m_run - m_new) + jnp.sum(p, axis=1)
      return m_new, l_new

    init = (_like(rows_t, c, (tile,), _NEG), _like(rows_t, c, (tile,), 0.0))
    m_run, l_run = lax.fori_loop(0, n_col_tiles, col_step, init)
    return m_run + jnp.log(l_run)

  ids = jnp.arange(r.shape[0], dtype=jnp.int32)
  lse = lax.map(row_tile, (ids, r, sc))
  return lse.reshape(-1)[:m]


def _backward(rows, cols, self_col, lse, g, tile):
  m, d = rows.shape
  n_cols = cols.shape[0]
  r = _pad_rows(rows, tile).reshape(-1, tile, d)
  c = _pad_rows(cols, tile).reshape(-1, tile, d)
  sc = _pad_rows(self_col, tile).reshape(-1, tile)
  # Padded rows get zero cotangent, so their (finite) recomputed probabilities contribute nothing.
  lse_t = _pad_rows(lse, tile).reshape(-1, tile)
  g_t = _pad_rows(g.astype(jnp.float32), tile).reshape(-1, tile)
  n_row_tiles, n_col_tiles = r.shape[0], c.shape[0]

  def row_step(dcols, i):
    rows_t, self_t, lse_i, g_i = r[i], sc[i], lse_t[i], g_t[i]

    def col_step(drows_i, j):
      cols_t = c[j]
      s, valid = _block(rows_t, cols_t, self_t, i * tile, j * tile, n_cols)
      ds = (jnp.where(valid, jnp.exp(s - lse_i[:, None]), 0.0) * g_i[:, None]).astype(rows.dtype)
      drows_i = drows_i + jnp.dot(ds, cols_t, preferred_element_type=jnp.float32)
      dc = lax.dot_general(ds, rows_t, (((0,), (0,)), ((), ())), preferred_element_type=jnp.float32)
      return drows_i, dc

    # Column-tile gradients leave the inner loop as stacked outputs and are added to the carry once
    # per row tile (updating the carry in place per block would copy it on some backends).
    drows_i, dc = lax.scan(
      col_step, _like(rows_t, c, (tile, d), 0.0), jnp.arange(n_col_tiles, dtype=jnp.int32)
    )
    return dcols + dc, drows_i

  dcols, drows = lax.scan(
    row_step, _like(r, c, c.shape, 0.0), jnp.arange(n_row_tiles, dtype=jnp.int32)
  )
  drows = drows.reshape(-1, d)[:m].astype(rows.dtype)
  dcols = dcols.reshape(-1, d)[:n_cols].astype(cols.dtype)
  return drows, dcols


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def _row_lse(rows, cols, self_col, tile):
  return _forward(rows, cols, self_col, tile)


def _row_lse_fwd(rows, cols, self_col, tile):
  lse = _forward(rows, cols, self_col, tile)
  return lse, (rows, cols, self_col, lse)


def _row_lse_bwd(tile, res, g):
  rows, cols, self_col, lse = res
  drows, dcols = _backward(rows, cols, self_col, lse, g, tile)
  return drows, dcols, None


_row_lse.defvjp(_row_lse_fwd, _row_lse_bwd)


def row_logsumexp(
  rows: jax.Array, cols: jax.Array, self_col: jax.Array, tile_size: int
) -> jax.Array:
  """Masked row log-sum-exp of rows @ cols.T, tiled, with exact custom gradients.

  Args:
    rows: (M, d) anchors, already multiplied by the logit scale (1 / temperature).
    cols: (C, d) candidates (this device's view of ALL candidates; no collectives inside).
    self_col: (M,) int, column index excluded from row i's sum (its self-similarity); -1 for none.
    tile_size: block edge; M and C need not be multiples of it (padding is masked).

  Returns:
    (M,) float32, lse_i = log sum_{j != self_col[i]} exp(rows_i . cols_j).
  """
  if tile_size <= 0:
    raise ValueError(f"tile_size must be a positive integer, got {tile_size}.")
  if rows.dtype != cols.dtype:
    dtype = jnp.promote_types(rows.dtype, cols.dtype)
    rows, cols = rows.astype(dtype), cols.astype(dtype)
  tile = int(min(tile_size, max(rows.shape[0], cols.shape[0])))
  return _row_lse(rows, cols, self_col.astype(jnp.int32), tile)


# ----------------------------------------------------------------------------- symmetric (Gram) var
#
# When rows and columns are the same set (single-device NT-Xent: s_ij = x_i . x_j with x = u /
# sqrt(tau)), S is symmetric: only blocks (I, J) with I <= J are computed, each feeding row
# statistics of tile I (from S) and of tile J (from S^T). The backward forms H = dS_IJ + dS_JI^T per
# block and applies it with two matmuls, so the total is 0.5 (forward) + 0.5 (recompute) + 1
# (gradient) matmul equivalents of the full 2N x 2N problem: the floor of the dense computation.


def _block_pairs(n_tiles: int):
  i, j = jnp.triu_indices(n_tiles)
  return i.astype(jnp.int32), j.astype(jnp.int32)


def _sym_block(x, i, j, tile, n):
  xi, xj = x[i], x[j]
  s = lax.dot_general(xi, xj, (((1,), (1,)), ((), ())), preferred_element_type=jnp.float32)
  rid = i * tile + jnp.arange(tile, dtype=jnp.int32)
  cid = j * tile + jnp.arange(tile, dtype=jnp.int32)
  valid = (rid[:, None] < n) & (cid[None, :] < n) & (rid[:, None] != cid[None, :])
  return xi, xj, s, valid


def _sym_forward(x, tile):
  n, d = x.shape
  xt = _pad_rows(x, tile).reshape(-1, tile, d)
  nt = xt.shape[0]

  def step(carry, ij):
    m, l = carry
    i, j = ij
    _, _, s, valid = _sym_block(xt, i, j, tile, n)
    s = jnp.where(valid, s, _NEG)
    # Row statistics of tile i.
    mi, li = m[i], l[i]
    mi_new = jnp.maximum(mi, jnp.max(s, axis=1))
    li_new = li * jnp.exp(mi - mi_new) + jnp.sum(
      jnp.where(valid, jnp.exp(s - mi_new[:, None]), 0.0), 1
    )
    m = lax.dynamic_update_index_in_dim(m, mi_new, i, 0)
    l = lax.dynamic_update_index_in_dim(l, li_new, i, 0)
    # Row statistics of tile j from S^T (a diagonal block was fully counted above).
    mj, lj = m[j], l[j]
    mj_new = jnp.maximum(mj, jnp.max(s, axis=0))
    lj_new = lj * jnp.exp(mj - mj_new) + jnp.sum(
      jnp.where(valid, jnp.exp(s - mj_new[None, :]), 0.0), 0
    )
    off_diag = i != j
    m = lax.dynamic_update_index_in_dim(m, jnp.where(off_diag, mj_new, mj), j, 0)
    l = lax.dynamic_update_index_in_dim(l, jnp.where(off_diag, lj_new, lj), j, 0)
    return (m, l), None

  init = (_like(xt, xt, (nt, tile), _NEG), _like(xt, xt, (nt, tile), 0.0))
  (m, l), _ = lax.scan(step, init, _block_pairs(nt))
  return (m + jnp.log(l)).reshape(-1)[:n]


def _sym_backward(x, lse, g, tile):
  n, d = x.shape
  xt = _pad_rows(x, tile).reshape(-1, tile, d)
  nt = xt.shape[0]
  lse_t = _pad_rows(lse, tile).reshape(-1, tile)
  g_t = _pad_rows(g.astype(jnp.float32), tile).reshape(-1, tile)

  def row_step(dx, i):
    def col_step(dxi, j):
      def compute(dxi):
        xi, xj, s, valid = _sym_block(xt, i, j, tile, n)
        p_row = jnp.exp(s - lse_t[i][:, None]) * g_t[i][:, None]
        p_col = jnp.exp(s - lse_t[j][None, :]) * g_t[j][None, :]
        h = jnp.where(valid, p_row + jnp.where(i != j, p_col, 0.0), 0.0).astype(x.dtype)
        dxi = dxi + jnp.dot(h, xj, preferred_element_type=jnp.float32)
        dxj = lax.dot_general(h, xi, (((0,), (0,)), ((), ())), preferred_element_type=jnp.float32)
        return dxi, dxj

      # Blocks below the diagonal are covered by their transposes.
      return lax.cond(j >= i, compute, lambda dxi: (dxi, jnp.zeros_like(dxi)), dxi)

    # Column-tile gradients leave the inner loop as stacked outputs, added once per row tile.
    dxi, dxj = lax.scan(col_step, _like(xt, xt, (tile, d), 0.0), jnp.arange(nt, dtype=jnp.int32))
    dx = dx + dxj
    return lax.dynamic_update_index_in_dim(dx, dx[i] + dxi, i, 0), None

  dx, _ = lax.scan(row_step, _like(xt, xt, xt.shape, 0.0), jnp.arange(nt, dtype=jnp.int32))
  return dx.reshape(-1, d)[:n].astype(x.dtype)


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def _sym_lse(x, tile):
  return _sym_forward(x, tile)


def _sym_lse_fwd(x, tile):
  lse = _sym_forward(x, tile)
  return lse, (x, lse)


def _sym_lse_bwd(tile, res, g):
  x, lse = res
  return (_sym_backward(x, lse, g, tile),)


_sym_lse.defvjp(_sym_lse_fwd, _sym_lse_bwd)


def gram_logsumexp(x: jax.Array, tile_size: int) -> jax.Array:
  """lse_i = log sum_{j != i} exp(x_i . x_j), tiled over the symmetric Gram matrix, exact custom gradients.

  Args:
    x: (M, d); for NT-Xent x = normalised embeddings / sqrt(temperature).
    tile_size: block edge; M need not be a multiple of it.

  Returns:
    (M,) float32.
  """
  if tile_size <= 0:
    raise ValueError(f"tile_size must be a positive integer, got {tile_size}.")
  return _sym_lse(x, int(min(tile_size, x.shape[0])))
