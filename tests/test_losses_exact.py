"""float32 exactness of the InfoNCE family against float64 NumPy (values AND gradients).

The regime that breaks the textbook formula: well-aligned views at a low temperature, where the
positive dominates every row, the loss is ~1e-5 and `logsumexp(row) - positive` loses most of its
digits to cancellation (so does the positive's gradient, softmax - 1). The losses compute each row as
softplus(logsumexp(negatives) - positive) instead; these tests pin value (relative 1e-5) and gradients
(1e-4 of the largest entry) against float64 references with analytic gradients, for the dense, tiled
and sharded paths, at temperatures 0.05 and 0.5, aligned and random views.
"""

import functools

import jax
import numpy as np
import pytest
from jax.sharding import NamedSharding

from contrastive_jax import losses as L

P = jax.sharding.PartitionSpec

VALUE_RTOL = 1e-5
GRAD_RTOL = 1e-4  # of the largest |gradient| entry


# ----------------------------------------------------------------------------- float64 references
# Each returns (loss, gradients w.r.t. the unnormalised inputs), float64, from the plain formula.


def _norm64(x):
  x = np.asarray(x, np.float64)
  r = np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-6)
  return x / r, r


def _norm_vjp(u, r, du):
  """Gradient through u = x / |x| (rows)."""
  return (du - u * np.sum(u * du, -1, keepdims=True)) / r


def _softmax_ce(s, pos, valid):
  """Per-row -log softmax(s)[pos] over valid columns, and d(sum of rows)/ds, in float64.

  Written relative to the positive so that float64 stays exact even where the loss is ~1e-15
  (tau 0.02, aligned views): loss = log(1 + sum_neg exp(s_neg - s_pos)); the softmax of a
  negative is exp(s - s_pos - loss) and the positive's gradient is minus their sum.
  """
  rows = np.arange(len(s))
  neg = valid.copy()
  neg[rows, pos] = False
  d = np.where(neg, s - s[rows, pos][:, None], -np.inf)
  m = np.max(d, 1, keepdims=True)
  m = np.where(np.isfinite(m), m, 0.0)
  lse_d = m[:, 0] + np.log(np.sum(np.exp(d - m), 1))
  loss = np.logaddexp(0.0, lse_d)
  ds = np.exp(d - loss[:, None])
  ds[rows, pos] = -np.sum(ds, 1)
  return loss, ds


def ref_nt_xent(z1, z2, tau):
  n = len(z1)
  u, r = _norm64(np.concatenate([z1, z2]))
  s = u @ u.T / tau
  pos = np.concatenate([np.arange(n, 2 * n), np.arange(n)])
  loss, ds = _softmax_ce(s, pos, ~np.eye(2 * n, dtype=bool))
  ds /= 2 * n
  du = (ds + ds.T) @ u / tau
  g = _norm_vjp(u, r, du)
  return np.mean(loss), (g[:n], g[n:])


def ref_info_nce(q, k, tau, negatives=None):
  (qu, qr), (ku, kr) = _norm64(q), _norm64(k)
  n = len(q)
  if negatives is None:
    s = qu @ ku.T / tau
    loss, ds = _softmax_ce(s, np.arange(n), np.ones_like(s, bool))
    ds /= n
    return np.mean(loss), (_norm_vjp(qu, qr, ds @ ku / tau), _norm_vjp(ku, kr, ds.T @ qu / tau))
  nu, nr = _norm64(negatives)
  s = np.concatenate([np.sum(qu * ku, -1, keepdims=True), qu @ nu.T], 1) / tau
  loss, ds = _softmax_ce(s, np.zeros(n, int), np.ones_like(s, bool))
  ds /= n
  dq = ds[:, :1] * ku / tau + ds[:, 1:] @ nu / tau
  dk = ds[:, :1] * qu / tau
  dn = ds[:, 1:].T @ qu / tau
  return np.mean(loss), (_norm_vjp(qu, qr, dq), _norm_vjp(ku, kr, dk), _norm_vjp(nu, nr, dn))


def ref_clip(x, y, logit_scale):
  (xu, xr), (yu, yr) = _norm64(x), _norm64(y)
  n, t = len(x), np.exp(np.float64(logit_scale))
  s = t * xu @ yu.T
  ones = np.ones_like(s, bool)
  l_i2t, d_i2t = _softmax_ce(s, np.arange(n), ones)
  l_t2i, d_t2i = _softmax_ce(s.T, np.arange(n), ones)
  ds = (d_i2t + d_t2i.T) / (2 * n)
  loss = 0.5 * (np.mean(l_i2t) + np.mean(l_t2i))
  return loss, (
    _norm_vjp(xu, xr, t * ds @ yu),
    _norm_vjp(yu, yr, t * ds.T @ xu),
    np.sum(ds * s),
  )


# ----------------------------------------------------------------------------- inputs and checks


def _views(kind, n, d, seed):
  """Unnormalised (z1, z2): 'random' independent views, 'aligned' z2 = z1 + 1e-3 noise."""
  rng = np.random.default_rng(seed)
  z1 = 3.0 * rng.normal(size=(n, d))
  if kind == "aligned":
    z2 = z1 + 1e-3 * rng.normal(size=(n, d))
  else:
    z2 = 3.0 * rng.normal(size=(n, d))
  return z1.astype(np.float32), z2.astype(np.float32)


def _check(got, want):
  (gv, gg), (wv, wg) = got, want
  np.testing.assert_allclose(float(gv), wv, rtol=VALUE_RTOL, atol=0)
  for a, b in zip(jax.tree.leaves(gg), jax.tree.leaves(wg)):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    np.testing.assert_allclose(a, b, rtol=0, atol=GRAD_RTOL * np.max(np.abs(b)))


@pytest.fixture(scope="module")
def mesh():
  return jax.make_mesh((8,), ("data",))


def _vg(fn, n_args):
  return jax.jit(jax.value_and_grad(fn, argnums=tuple(range(n_args))))


def _paths(mesh, fn, specs):
  """value_and_grad of fn on one device and under shard_map (fn(..., axis_name='data'))."""
  sm = jax.shard_map(
    functools.partial(fn, axis_name="data"), mesh=mesh, in_specs=tuple(specs), out_specs=P()
  )
  sharded = _vg(sm, len(specs))

  def run_sharded(*args):
    return sharded(*[jax.device_put(a, NamedSharding(mesh, s)) for a, s in zip(args, specs)])

  return {"single": _vg(fn, len(specs)), "sharded": run_sharded}


def _check_all(paths, inputs, ref):
  """Every path (dense / tiled x single / sharded) on every input set (aligned, random): one
  compilation per path, reused across the input sets."""
  for kind, args in inputs.items():
    want = ref(*args)
    for name, f in paths.items():
      try:
        _check(f(*args), want)
      except AssertionError as e:
        raise AssertionError(f"{name}, {kind} views") from e


def _nt_inputs(seed):
  return {kind: _views(kind, 64, 32, seed) for kind in ("aligned", "random")}


def _paths_for(mesh, make_fn, specs):
  out = {}
  for tile in (None, 16):
    for k, f in _paths(mesh, make_fn(tile), specs).items():
      out[f"{k} tile={tile}"] = f
  return out


def test_aligned_views_are_the_hard_regime():
  """The aligned case really is near zero loss (else the tests below would not probe cancellation)."""
  z1, z2 = _views("aligned", 64, 32, 0)
  assert ref_nt_xent(z1, z2, 0.05)[0] < 1e-3
  assert ref_info_nce(z1, z2, 0.05)[0] < 1e-3
  assert ref_clip(z1, z2, np.log(1 / 0.05))[0] < 1e-3


@pytest.mark.parametrize("tau", [0.05, 0.5])
def test_nt_xent_exact(mesh, tau):
  make = lambda tile: (
    lambda a, b, axis_name=None: L.nt_xent(a, b, tau, axis_name=axis_name, tile_size=tile)
  )
  paths = _paths_for(mesh, make, (P("data"), P("data")))
  _check_all(paths, _nt_inputs(1), lambda a, b: ref_nt_xent(a, b, tau))


@pytest.mark.parametrize("tau", [0.05, 0.5])
def test_info_nce_exact(mesh, tau):
  make = lambda tile: (
    lambda a, b, axis_name=None: L.info_nce(a, b, tau, axis_name=axis_name, tile_size=tile)
  )
  _check_all(
    _paths_for(mesh, make, (P("data"), P("data"))),
    _nt_inputs(2),
    lambda a, b: ref_info_nce(a, b, tau),
  )
  queue = _views("random", 48, 32, 3)[0]
  make_q = lambda tile: (
    lambda a, b, c, axis_name=None: L.info_nce(
      a, b, tau, negatives=c, axis_name=axis_name, tile_size=tile
    )
  )
  _check_all(
    _paths_for(mesh, make_q, (P("data"), P("data"), P())),
    {k: (a, b, queue) for k, (a, b) in _nt_inputs(2).items()},
    lambda a, b, c: ref_info_nce(a, b, tau, c),
  )


@pytest.mark.parametrize("tau", [0.05, 0.5])
def test_clip_exact(mesh, tau):
  scale = np.float32(np.log(1 / tau))
  make = lambda tile: (
    lambda a, b, s, axis_name=None: L.clip_loss(a, b, s, axis_name=axis_name, tile_size=tile)
  )
  _check_all(
    _paths_for(mesh, make, (P("data"), P("data"), P())),
    {k: (a, b, scale) for k, (a, b) in _nt_inputs(4).items()},
    ref_clip,
  )


def test_nt_xent_exact_bigger_batch():
  """N = 512 pairs, d = 128 (SimCLR's projection width), aligned at tau 0.05, dense and tiled."""
  z1, z2 = _views("aligned", 512, 128, 5)
  want = ref_nt_xent(z1, z2, 0.05)
  for tile in (None, 128):
    _check(_vg(lambda a, b: L.nt_xent(a, b, 0.05, tile_size=tile), 2)(z1, z2), want)


def test_positive_far_below_negatives_and_low_temperature():
  """Anti-aligned views (positive far below the negatives) at tau 0.05 (static exp shift) and
  tau 0.02 (too cold for the shift: the kernels' running maximum), dense and tiled."""
  z1, z2 = _views("aligned", 32, 16, 6)
  for tau in (0.05, 0.02):
    for tile in (None, 8):
      f = _vg(lambda a, b: L.nt_xent(a, b, tau, tile_size=tile), 2)
      for b in (-z1, z2):
        _check(f(z1, b), ref_nt_xent(z1, b, tau))
