"""Losses: float64 NumPy references from the papers' formulas, sharded == single device (values and grads,
including the shard_map(check_vma=True) convention for replicated params), tiled == dense, edge cases."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding

from contrastive_jax import losses as L
from contrastive_jax import losses_triplet as LT

P = jax.sharding.PartitionSpec
N_DEV = 8


# ----------------------------------------------------------------------------- float64 references


def _np_norm(x):
  x = np.asarray(x, np.float64)
  return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-6)


def _np_lse(s, axis=-1):
  m = np.max(s, axis=axis, keepdims=True)
  return np.squeeze(m, axis) + np.log(np.sum(np.exp(s - m), axis=axis))


def ref_nt_xent(z1, z2, tau):
  n = len(z1)
  u = _np_norm(np.concatenate([z1, z2]))
  pos = np.concatenate([np.arange(n, 2 * n), np.arange(n)])
  total = 0.0
  for lo in range(0, 2 * n, 1024):  # row chunks keep the N = 4096 reference small
    s = u[lo : lo + 1024] @ u.T / tau
    rows = np.arange(lo, min(lo + 1024, 2 * n))
    s[rows - lo, rows] = -np.inf
    total += np.sum(_np_lse(s) - s[rows - lo, pos[rows]])
  return total / (2 * n)


def ref_info_nce(q, k, tau, negatives=None):
  q, k = _np_norm(q), _np_norm(k)
  pos = np.sum(q * k, -1) / tau
  if negatives is None:
    s = q @ k.T / tau
  else:
    s = np.concatenate([pos[:, None], q @ _np_norm(negatives).T / tau], axis=1)
  return np.mean(_np_lse(s) - pos)


def ref_clip(x, y, logit_scale):
  s = np.exp(logit_scale) * _np_norm(x) @ _np_norm(y).T
  d = np.diag(s)
  return 0.5 * (np.mean(_np_lse(s, 1) - d) + np.mean(_np_lse(s, 0) - d))


def ref_sigmoid(x, y, logit_scale, bias):
  logits = np.exp(logit_scale) * _np_norm(x) @ _np_norm(y).T + bias
  z = 2 * np.eye(len(x)) - 1
  return -np.sum(np.log(1 / (1 + np.exp(-z * logits)))) / len(x)


def ref_supcon(z, labels, tau):
  n, v, _ = z.shape
  u = _np_norm(z).reshape(n * v, -1)
  lab = np.repeat(labels, v)
  losses = []
  for a in range(n * v):  # eq. 2 of Khosla et al., literally
    others = [k for k in range(n * v) if k != a]
    denom = np.log(np.sum([np.exp(u[a] @ u[k] / tau) for k in others]))
    pos = [p for p in others if lab[p] == lab[a]]
    if pos:
      losses.append(-np.mean([u[a] @ u[p] / tau - denom for p in pos]))
  return np.mean(losses)


def ref_batch_hard(x, labels, margin, mining, squared=False):
  x = np.asarray(x, np.float64)
  d2 = np.sum((x[:, None] - x[None]) ** 2, -1)
  d = d2 if squared else np.sqrt(d2)
  losses = []
  for i in range(len(x)):
    pos = [j for j in range(len(x)) if j != i and labels[j] == labels[i]]
    neg = [j for j in range(len(x)) if labels[j] != labels[i]]
    if not pos or not neg:
      continue
    dap = max(d[i, j] for j in pos)
    dan = min(d[i, j] for j in neg)
    if mining == "semi_hard":
      semi = [d[i, j] for j in neg if d[i, j] > dap]
      dan = min(semi) if semi else dan
    losses.append(max(dap - dan + margin, 0.0))
  return np.mean(losses)


def _rand(rng, *shape, scale=3.0):
  return (scale * rng.normal(size=shape)).astype(np.float32)  # unnormalised on purpose


@pytest.fixture(scope="module")
def mesh():
  return jax.make_mesh((N_DEV,), ("data",))


def _sharded(mesh, fn, *args, specs):
  """Run fn(*local_shards) under shard_map with out_specs P(); returns (fn, sharded args)."""
  args = [jax.device_put(a, NamedSharding(mesh, s)) for a, s in zip(args, specs)]
  return jax.shard_map(fn, mesh=mesh, in_specs=tuple(specs), out_specs=P()), args


def _close(a, b, rtol=1e-5, atol=1e-6):
  np.testing.assert_allclose(
    np.asarray(a, np.float64), np.asarray(b, np.float64), rtol=rtol, atol=atol
  )


def _grads_close(ga, gb, rtol=1e-5):
  for a, b in zip(jax.tree.leaves(ga), jax.tree.leaves(gb)):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    np.testing.assert_allclose(a, b, rtol=0, atol=rtol * np.max(np.abs(b)) + 1e-9)


# ----------------------------------------------------------------------------- references


@pytest.mark.parametrize("n,d,tau", [(1, 8, 0.1), (7, 16, 0.05), (64, 32, 0.5), (300, 64, 0.05)])
def test_nt_xent_reference(n, d, tau):
  rng = np.random.default_rng(n)
  z1, z2 = _rand(rng, n, d), _rand(rng, n, d)
  want = ref_nt_xent(z1, z2, tau)
  _close(jax.jit(L.nt_xent, static_argnames="tile_size")(z1, z2, tau), want)
  _close(jax.jit(L.nt_xent, static_argnames="tile_size")(z1, z2, tau, tile_size=64), want)


def test_nt_xent_reference_large():
  rng = np.random.default_rng(4096)
  z1, z2 = _rand(rng, 4096, 32), _rand(rng, 4096, 32)
  want = ref_nt_xent(z1, z2, 0.05)
  _close(jax.jit(functools.partial(L.nt_xent, temperature=0.05))(z1, z2), want, rtol=2e-5)
  _close(
    jax.jit(functools.partial(L.nt_xent, temperature=0.05, tile_size=1024))(z1, z2), want, rtol=2e-5
  )


def test_nt_xent_hand_computed():
  # Two orthogonal pairs, tau = 1: each anchor sees exp(1) (positive) + 2 * exp(0).
  z1 = jnp.array([[1.0, 0.0], [0.0, 1.0]])
  z2 = jnp.array([[2.0, 0.0], [0.0, 5.0]])
  want = -np.log(np.e / (np.e + 2))
  _close(L.nt_xent(z1, z2, 1.0), want)


@pytest.mark.parametrize("tile", [None, 16])
def test_info_nce_reference(tile):
  rng = np.random.default_rng(1)
  q, k, queue = _rand(rng, 40, 16), _rand(rng, 40, 16), _rand(rng, 100, 16)
  f = jax.jit(L.info_nce, static_argnames="tile_size")
  _close(f(q, k, 0.05, tile_size=tile), ref_info_nce(q, k, 0.05))
  _close(f(q, k, 0.2, negatives=queue, tile_size=tile), ref_info_nce(q, k, 0.2, queue))


@pytest.mark.parametrize("tile", [None, 16])
def test_clip_reference(tile):
  rng = np.random.default_rng(2)
  x, y = _rand(rng, 50, 24), _rand(rng, 50, 24)
  f = jax.jit(L.clip_loss, static_argnames="tile_size")
  _close(f(x, y, np.log(1 / 0.07), tile_size=tile), ref_clip(x, y, np.log(1 / 0.07)))


def test_clip_identical_towers_matches_definition():
  rng = np.random.default_rng(3)
  x = _rand(rng, 20, 8)
  # Both directions see the same symmetric logits: the loss equals one cross-entropy with targets i.
  s = np.exp(1.5) * _np_norm(x) @ _np_norm(x).T
  _close(L.clip_loss(x, x, 1.5), np.mean(_np_lse(s) - np.diag(s)))


def test_sigmoid_reference():
  rng = np.random.default_rng(4)
  x, y = _rand(rng, 30, 16), _rand(rng, 30, 16)
  _close(jax.jit(L.sigmoid_loss)(x, y, np.log(10.0), -10.0), ref_sigmoid(x, y, np.log(10.0), -10.0))


def test_supcon_reference():
  rng = np.random.default_rng(5)
  z = _rand(rng, 12, 3, 8)
  labels = np.array([0, 1, 2, 0, 1, 2, 0, 3, 4, 4, 1, 0], np.int32)
  _close(jax.jit(L.supcon)(z, labels, 0.1), ref_supcon(z, labels, 0.1))


def test_supcon_unique_labels_is_nt_xent():
  rng = np.random.default_rng(6)
  z1, z2 = _rand(rng, 16, 8), _rand(rng, 16, 8)
  got = L.supcon(jnp.stack([z1, z2], axis=1), jnp.arange(16), 0.07)
  _close(got, L.nt_xent(z1, z2, 0.07))


def test_triplet_reference():
  rng = np.random.default_rng(7)
  a, p, n = _rand(rng, 10, 4, scale=1.0), _rand(rng, 10, 4, scale=1.0), _rand(rng, 10, 4, scale=1.0)
  d = lambda x, y: np.sum((x.astype(np.float64) - y) ** 2, -1)
  _close(LT.triplet(a, p, n, 0.5), np.mean(np.maximum(d(a, p) - d(a, n) + 0.5, 0)))
  _close(
    LT.triplet(a, p, n, 0.5, squared=False),
    np.mean(np.maximum(np.sqrt(d(a, p)) - np.sqrt(d(a, n)) + 0.5, 0)),
  )


def test_batch_hard_hand_made():
  # 1-D points: class 0 at {0, 1}, class 1 at {3, 10}.
  x = jnp.array([[0.0], [1.0], [3.0], [10.0]])
  labels = jnp.array([0, 0, 1, 1])
  # hard: anchor0 d_ap=1, d_an=3 -> 0; anchor1 d_ap=1,d_an=2 -> 0; anchor2 d_ap=7,d_an=2 -> 6;
  # anchor3 7,9 -> 0
  _close(LT.batch_hard_triplet(x, labels, 1.0, mining="hard"), (0 + 0 + 6 + 0) / 4)
  # semi-hard: anchor2 closest negative farther than 7: none (1 at 2, 0 at 3) -> hardest (2) -> 6;
  # anchor0: negatives 3, 10 farther than 1 -> 3 -> 0. anchor3: d_ap=7, negatives 9, 10 -> 9 -> 0.
  _close(LT.batch_hard_triplet(x, labels, 1.0, mining="semi_hard"), 6 / 4)
  # margin 3: anchor1 hard: 1 - 2 + 3 = 2; semi-hard: negatives farther than 1: 3 at 2 -> 2 too.
  _close(LT.batch_hard_triplet(x, labels, 3.0, mining="hard"), (1 + 2 + 8 + 1) / 4)


@pytest.mark.parametrize("mining", ["hard", "semi_hard"])
def test_batch_hard_reference(mining):
  rng = np.random.default_rng(8)
  x, labels = _rand(rng, 32, 6, scale=1.0), rng.integers(0, 5, 32).astype(np.int32)
  f = jax.jit(functools.partial(LT.batch_hard_triplet, mining=mining))
  _close(f(x, labels, 0.3), ref_batch_hard(x, labels, 0.3, mining))


def test_negative_cosine_and_diagnostics():
  rng = np.random.default_rng(9)
  p, z = _rand(rng, 64, 16), _rand(rng, 64, 16)
  _close(L.negative_cosine(p, z), -np.mean(np.sum(_np_norm(p) * _np_norm(z), -1)))
  u, v = _np_norm(p), _np_norm(z)
  _close(L.alignment(p, z), np.mean(np.sum((u - v) ** 2, -1)))
  _close(L.alignment(p, z, alpha=1), np.mean(np.linalg.norm(u - v, axis=-1)))
  sq = np.sum((u[:, None] - u[None]) ** 2, -1)[np.triu_indices(64, 1)]
  _close(L.uniformity(p), np.log(np.mean(np.exp(-2 * sq))), rtol=1e-4, atol=1e-5)
  _close(L.embedding_std(p), np.mean(np.std(u, axis=0)))
  _close(L.embedding_std(np.ones((8, 16))), 0.0)
  # accuracy: positives are noisy copies -> high; the reference ranks by float64 similarities.
  z2 = p + 0.5 * _rand(rng, 64, 16, scale=1.0)
  w = _np_norm(np.concatenate([p, z2]))
  s = w @ w.T
  np.fill_diagonal(s, -np.inf)
  want = np.mean(np.argmax(s, 1) == np.concatenate([np.arange(64, 128), np.arange(64)]))
  _close(L.contrastive_accuracy(p, z2), want)


# ----------------------------------------------------------------------------- sharded == single de


def _check_sharded(mesh, fn, args, specs, rtol=1e-5):
  """Value and input-gradients of fn(axis_name='data') under shard_map == fn on one device."""
  want, want_g = jax.jit(jax.value_and_grad(fn, argnums=tuple(range(len(args)))))(*args)
  sm, sargs = _sharded(mesh, functools.partial(fn, axis_name="data"), *args, specs=specs)
  got, got_g = jax.jit(jax.value_and_grad(sm, argnums=tuple(range(len(args)))))(*sargs)
  _close(got, want, rtol=rtol)
  _grads_close(got_g, want_g, rtol=rtol)


@pytest.mark.parametrize("tile", [None, 8])
def test_nt_xent_sharded(mesh, tile):
  rng = np.random.default_rng(10)
  z1, z2 = _rand(rng, 48, 16), _rand(rng, 48, 16)
  fn = lambda a, b, axis_name=None: L.nt_xent(a, b, 0.05, axis_name=axis_name, tile_size=tile)
  _check_sharded(mesh, fn, (z1, z2), (P("data"), P("data")))


@pytest.mark.parametrize("tile", [None, 8])
def test_info_nce_and_clip_sharded(mesh, tile):
  rng = np.random.default_rng(11)
  q, k, queue = _rand(rng, 32, 8), _rand(rng, 32, 8), _rand(rng, 20, 8)
  fn = lambda a, b, axis_name=None: L.info_nce(a, b, 0.1, axis_name=axis_name, tile_size=tile)
  _check_sharded(mesh, fn, (q, k), (P("data"), P("data")))
  fn = lambda a, b, c, axis_name=None: L.info_nce(
    a, b, 0.1, negatives=c, axis_name=axis_name, tile_size=tile
  )
  _check_sharded(mesh, fn, (q, k, queue), (P("data"), P("data"), P()))
  fn = lambda a, b, s, axis_name=None: L.clip_loss(a, b, s, axis_name=axis_name, tile_size=tile)
  _check_sharded(mesh, fn, (q, k, np.float32(2.0)), (P("data"), P("data"), P()))


def test_other_losses_sharded(mesh):
  rng = np.random.default_rng(12)
  x, y = _rand(rng, 32, 8), _rand(rng, 32, 8)
  labels = rng.integers(0, 4, 32).astype(np.int32)
  fn = lambda a, b, s, bias, axis_name=None: L.sigmoid_loss(a, b, s, bias, axis_name=axis_name)
  _check_sharded(
    mesh, fn, (x, y, np.float32(2.3), np.float32(-5.0)), (P("data"), P("data"), P(), P())
  )
  z = _rand(rng, 32, 2, 8)
  fn2 = lambda a, lab, axis_name=None: L.supcon(a, lab, 0.1, axis_name=axis_name)
  want = L.supcon(z, labels, 0.1)
  sm, (sz, sl) = _sharded(
    mesh, functools.partial(fn2, axis_name="data"), z, labels, specs=(P("data"), P("data"))
  )
  _close(jax.jit(sm)(sz, sl), want)
  _grads_close(jax.jit(jax.grad(sm))(sz, sl), jax.jit(jax.grad(fn2))(z, labels))
  for mining in ("hard", "semi_hard"):
    fn3 = lambda a, lab, axis_name=None: LT.batch_hard_triplet(
      a, lab, 0.5, axis_name=axis_name, mining=mining
    )
    sm, (sx, sl) = _sharded(
      mesh, functools.partial(fn3, axis_name="data"), x, labels, specs=(P("data"), P("data"))
    )
    _close(jax.jit(sm)(sx, sl), fn3(x, labels))
    _grads_close(jax.jit(jax.grad(sm))(sx, sl), jax.jit(jax.grad(fn3))(x, labels))
  sm, (sx, sy) = _sharded(
    mesh,
    lambda a, b: L.contrastive_accuracy(a, b, axis_name="data"),
    x,
    x + 0.3 * y,
    specs=(P("data"), P("data")),
  )
  _close(jax.jit(sm)(sx, sy), L.contrastive_accuracy(x, x + 0.3 * y))


@pytest.mark.parametrize("tile", [None, 8])
def test_replicated_param_grad_check_vma(mesh, tile):
  """The train-step convention: jax.grad INSIDE shard_map(check_vma=True) of the global (psum-ed) loss
  w.r.t. replicated params is the exact global gradient: no extra pmean / psum."""
  rng = np.random.default_rng(13)
  x1, x2 = _rand(rng, 64, 12), _rand(rng, 64, 12)
  w = _rand(rng, 12, 8, scale=0.3)

  def loss(w, a, b, axis_name=None):
    return L.nt_xent(a @ w, b @ w, 0.1, axis_name=axis_name, tile_size=tile)

  want_l, want_g = jax.jit(jax.value_and_grad(loss))(w, x1, x2)

  def step(w, a, b):
    return jax.value_and_grad(loss)(w, a, b, axis_name="data")

  args = [jax.device_put(w, NamedSharding(mesh, P()))] + [
    jax.device_put(v, NamedSharding(mesh, P("data"))) for v in (x1, x2)
  ]
  sm = jax.shard_map(
    step, mesh=mesh, in_specs=(P(), P("data"), P("data")), out_specs=(P(), P()), check_vma=True
  )
  got_l, got_g = jax.jit(sm)(*args)
  _close(got_l, want_l)
  _grads_close(got_g, want_g)


# ----------------------------------------------------------------------------- tiled == dense


@pytest.mark.parametrize(
  "n,tile", [(100, 32), (37, 64), pytest.param(130, 7, marks=pytest.mark.slow)]
)
def test_tiled_equals_dense(n, tile):
  rng = np.random.default_rng(n + tile)
  z1, z2, queue = _rand(rng, n, 16), _rand(rng, n, 16), _rand(rng, 45, 16)
  cases = [
    lambda a, b, t: L.nt_xent(a, b, 0.05, tile_size=t),
    lambda a, b, t: L.info_nce(a, b, 0.1, tile_size=t),
    lambda a, b, t: L.info_nce(a, b, 0.1, negatives=queue, tile_size=t),
    lambda a, b, t: L.clip_loss(a, b, 2.5, tile_size=t),
  ]
  for f in cases:
    dense = jax.jit(jax.value_and_grad(lambda a, b: f(a, b, None), argnums=(0, 1)))(z1, z2)
    tiled = jax.jit(jax.value_and_grad(lambda a, b: f(a, b, tile), argnums=(0, 1)))(z1, z2)
    _close(tiled[0], dense[0])
    _grads_close(tiled[1], dense[1])


def test_tiled_grad_of_logit_scale():
  rng = np.random.default_rng(14)
  x, y = _rand(rng, 40, 8), _rand(rng, 40, 8)
  g = lambda t: jax.grad(lambda s: L.clip_loss(x, y, s, tile_size=t))(2.0)
  _close(g(16), g(None))


# ----------------------------------------------------------------------------- edge cases and dtype


@pytest.mark.parametrize("tile", [None, 4])
def test_collapse_and_single_pair_are_finite(tile):
  same = jnp.ones((16, 8))
  for f in [
    lambda a, b: L.nt_xent(a, b, 0.01, tile_size=tile),
    lambda a, b: L.info_nce(a, b, 0.01, tile_size=tile),
    lambda a, b: L.clip_loss(a, b, np.log(100.0), tile_size=tile),
  ]:
    vg = jax.jit(jax.value_and_grad(f, argnums=(0, 1)))
    v, g = vg(same, same)
    assert np.isfinite(v) and all(np.all(np.isfinite(x)) for x in g)
    v1, g1 = vg(same[:1], same[:1] * 2)
    assert np.isfinite(v1) and all(np.all(np.isfinite(x)) for x in g1)
  # 2N anchors, each with 2N-1 equal candidates: loss log(2N - 1).
  nt = jax.jit(lambda a: L.nt_xent(a, a, 0.01, tile_size=tile))
  _close(nt(same), np.log(31), rtol=1e-5)
  _close(nt(same[:1]), 0.0)
  zeros = jnp.zeros((4, 8))
  g = jax.jit(jax.grad(nt))(zeros)
  assert np.all(np.isfinite(g))
  g = jax.jit(jax.grad(lambda a: LT.batch_hard_triplet(a, jnp.array([0, 0, 1, 1]), 0.2)))(zeros)
  assert np.all(np.isfinite(g))


@pytest.mark.parametrize("tile", [None, 32])
def test_bfloat16_inputs(tile):
  rng = np.random.default_rng(15)
  z1, z2 = _rand(rng, 96, 32), _rand(rng, 96, 32)
  cases = [
    lambda a, b: L.nt_xent(a, b, 0.1, tile_size=tile),
    lambda a, b: L.clip_loss(a, b, 2.0, tile_size=tile),
  ]
  if tile is None:
    cases += [
      lambda a, b: L.info_nce(a, b, 0.1),
      lambda a, b: L.sigmoid_loss(a, b, 2.0, -3.0),
      lambda a, b: L.supcon(jnp.stack([a, b], 1), jnp.arange(96) % 7, 0.1),
    ]
  for f in cases:
    want = jax.jit(f)(z1, z2)
    got, g = jax.jit(jax.value_and_grad(f, argnums=(0, 1)))(
      z1.astype(jnp.bfloat16), z2.astype(jnp.bfloat16)
    )
    assert got.dtype == jnp.float32
    assert g[0].dtype == jnp.bfloat16 and np.all(np.isfinite(np.asarray(g[0], np.float32)))
    _close(got, want, rtol=2e-2)
