"""Linear probe: separable features reach >= 99 %, selection uses the val split, hold-out split is sound."""

import numpy as np
import pytest

from contrastive_jax.evaluators import linear


def _separable(n, dim, num_classes, rng):
  centres = 3.0 * rng.normal(size=(num_classes, dim))
  y = rng.integers(0, num_classes, size=n)
  x = centres[y] + 0.5 * rng.normal(size=(n, dim))
  return x.astype(np.float32), y.astype(np.int32)


@pytest.mark.parametrize(
  "optimizer,normalization", [("sgd_nesterov", "standardize"), ("lars", "l2")]
)
def test_linearly_separable_reaches_99_percent(optimizer, normalization):
  rng = np.random.default_rng(0)
  x, y = _separable(3000, 32, 10, rng)
  tr, va = linear.holdout_split(len(x), 0.1, seed=0, labels=y)
  xt, yt = _separable(1000, 32, 10, np.random.default_rng(0))  # same centres, fresh noise below
  xt = xt + 0.1 * rng.normal(size=xt.shape).astype(np.float32)
  lrs = (0.1, 1.0) if optimizer == "sgd_nesterov" else (1.0, 10.0)
  res = linear.train_linear_probe(
    x[tr],
    y[tr],
    x[va],
    y[va],
    num_classes=10,
    lrs=lrs,
    weight_decays=(0.0, 1e-4),
    epochs=10,
    batch_size=256,
    seed=0,
    optimizer=optimizer,
    normalization=normalization,
  )
  assert res.val_top1 >= 0.99
  assert len(res.grid) == 4
  assert res.best_lr in lrs and res.best_weight_decay in (0.0, 1e-4)
  assert res.val_top1 == max(g["val_top1"] for g in res.grid)
  top1, top5 = linear.evaluate_linear(res.params, xt, yt)
  assert top1 >= 0.99 and top5 >= top1
  assert res.evaluate(xt, yt) == (top1, top5)


def test_no_refit_returns_selected_grid_member():
  rng = np.random.default_rng(1)
  x, y = _separable(600, 8, 3, rng)
  tr, va = linear.holdout_split(len(x), 0.2, seed=1)
  res = linear.train_linear_probe(
    x[tr],
    y[tr],
    x[va],
    y[va],
    num_classes=3,
    lrs=(0.1,),
    weight_decays=(0.0,),
    epochs=5,
    batch_size=64,
    refit=False,
  )
  assert linear.evaluate_linear(res.params, x[va], y[va])[0] == pytest.approx(res.val_top1)
  assert res.val_top5 == 1.0  # top-min(5, C) with 3 classes


def test_holdout_split_disjoint_reproducible():
  tr, va = linear.holdout_split(1000, 0.1, seed=3)
  assert len(va) == 100 and len(tr) == 900
  assert np.intersect1d(tr, va).size == 0
  np.testing.assert_array_equal(np.union1d(tr, va), np.arange(1000))
  tr2, va2 = linear.holdout_split(1000, 0.1, seed=3)
  np.testing.assert_array_equal(va, va2)
  np.testing.assert_array_equal(tr, tr2)
  _, va3 = linear.holdout_split(1000, 0.1, seed=4)
  assert not np.array_equal(va, va3)


def test_holdout_split_stratified():
  labels = np.repeat(np.arange(4), [100, 200, 300, 400])
  tr, va = linear.holdout_split(len(labels), 0.1, seed=0, labels=labels)
  np.testing.assert_array_equal(np.bincount(labels[va]), [10, 20, 30, 40])
  assert np.intersect1d(tr, va).size == 0 and len(tr) + len(va) == len(labels)


def test_bad_arguments_raise():
  with pytest.raises(ValueError, match="fraction"):
    linear.holdout_split(10, 1.5)
  x = np.zeros((4, 2), np.float32)
  with pytest.raises(ValueError, match="optimizer"):
    linear.train_linear_probe(
      x, [0, 1, 0, 1], x, [0, 1, 0, 1], num_classes=2, epochs=1, batch_size=2, optimizer="adam"
    )


def test_topk_accuracy_and_predict_by_hand():
  logits = np.array([[0.1, 0.9, 0.0], [0.8, 0.1, 0.05], [0.2, 0.3, 0.5], [0.6, 0.3, 0.1]])
  labels = np.array([1, 1, 2, 2])  # rows 0, 2 right; row 1's label is 2nd, row 3's is 3rd
  assert linear.topk_accuracy(logits, labels) == (0.5, 1.0)  # top-min(5, C) = top-3: all
  # Padding rows (mask 0) do not count.
  top1, _ = linear.topk_accuracy(logits, labels, mask=np.array([1.0, 0.0, 1.0, 0.0]))
  assert top1 == 1.0
  # predict on raw features agrees with evaluate_linear's top-1 (same normalisation).
  rng = np.random.default_rng(0)
  x, y = _separable(200, 8, 4, rng)
  res = linear.train_linear_probe(
    x[:150], y[:150], x[150:], y[150:], num_classes=4, lrs=(0.1,), weight_decays=(0.0,), epochs=3
  )
  top1, _ = res.evaluate(x, y)
  assert np.isclose((linear.predict(res.params, x) == y).mean(), top1)


def test_select_first_best_pair():
  pairs = [(0.1, 0.0), (0.1, 1e-4), (1.0, 0.0)]
  acc = np.array([[0.5, 0.9], [0.7, 0.9], [0.7, 1.0]])
  best, grid = linear.select(pairs, acc)
  assert best == 1 and grid[2] == {"lr": 1.0, "weight_decay": 0.0, "val_top1": 0.7, "val_top5": 1.0}


def _reference_head(batches, w, mean, inv_std, num_classes, lr, wd, total):
  """Float64 NumPy: frozen linear 'encoder' w, standardised features, softmax cross-entropy, weight
  decay on the kernel, Nesterov SGD (momentum 0.9, optax's trace), cosine decay of lr to 0."""
  d = w.shape[1]
  kernel, bias = np.zeros((d, num_classes)), np.zeros(num_classes)
  tk, tb = np.zeros_like(kernel), np.zeros_like(bias)
  for count, b in enumerate(batches[:total]):
    x = (b["image"].reshape(len(b["image"]), -1).astype(np.float64) @ w - mean) * inv_std
    logits = x @ kernel + bias
    p = np.exp(logits - logits.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    g = (p - np.eye(num_classes)[b["label"]]) / len(x)
    gk, gb = x.T @ g + wd * kernel, g.sum(0)
    step = lr * 0.5 * (1 + np.cos(np.pi * min(count, total) / total))
    tk, tb = gk + 0.9 * tk, gb + 0.9 * tb
    kernel, bias = kernel - step * (gk + 0.9 * tk), bias - step * (gb + 0.9 * tb)
  return kernel, bias


def test_augmented_probe_matches_float64_reference_and_keeps_encoder():
  """Each head of the vmapped grid equals a float64 NumPy run of that (lr, wd) on the same batches;
  the encoder state is read, never changed."""
  import jax  # pylint: disable=g-import-not-at-top

  from contrastive_jax import sharding  # pylint: disable=g-import-not-at-top
  from contrastive_jax.evaluators import linear_augmented  # pylint: disable=g-import-not-at-top

  rng = np.random.default_rng(0)
  mesh = sharding.make_mesh()
  w = rng.normal(size=(12, 6)).astype(np.float32)
  enc = jax.device_put({"w": w}, sharding.replicated(mesh))

  def embed(state, images):
    return images.reshape(images.shape[0], -1) @ state["w"]

  batches = [
    {
      "image": rng.normal(size=(16, 2, 2, 3)).astype(np.float32),
      "label": rng.integers(0, 3, 16).astype(np.int32),
    }
    for _ in range(5)
  ]
  train_x = rng.normal(size=(40, 6)).astype(np.float32)
  val_x, val_y = rng.normal(size=(30, 6)).astype(np.float32), rng.integers(0, 3, 30)
  common = dict(
    train_x=train_x, val_x=val_x, val_y=val_y, num_classes=3, optimizer="sgd_nesterov", mesh=mesh
  )
  losses = []
  grid = linear_augmented.train_augmented_probe(
    embed,
    enc,
    iter(batches),
    lrs=(0.1, 1.0),
    weight_decays=(0.0, 0.01),
    total_steps=4,
    on_loss=lambda s, v: losses.append(s),
    log_every=2,
    **common,
  )
  assert losses == [2, 4] and len(grid.grid) == 4
  np.testing.assert_array_equal(np.asarray(enc["w"]), w)
  mean = train_x.mean(0).astype(np.float64)
  inv_std = 1.0 / (train_x.std(0).astype(np.float64) + 1e-6)
  for entry in grid.grid:
    lr, wd = entry["lr"], entry["weight_decay"]
    one = linear_augmented.train_augmented_probe(
      embed, enc, iter(batches), lrs=(lr,), weight_decays=(wd,), total_steps=4, **common
    )
    kernel, bias = _reference_head(batches, w.astype(np.float64), mean, inv_std, 3, lr, wd, 4)
    np.testing.assert_allclose(one.params["kernel"], kernel, rtol=2e-4, atol=2e-5)
    np.testing.assert_allclose(one.params["bias"], bias, rtol=2e-4, atol=2e-5)
    assert one.val_top1 == entry["val_top1"]
    if (lr, wd) == (grid.best_lr, grid.best_weight_decay):
      np.testing.assert_allclose(grid.params["kernel"], one.params["kernel"], rtol=1e-5, atol=1e-6)
  with pytest.raises(ValueError, match="optimizer"):
    linear_augmented.train_augmented_probe(
      embed,
      enc,
      iter(batches),
      lrs=(0.1,),
      weight_decays=(0.0,),
      total_steps=1,
      **{**common, "optimizer": "adam"},
    )
