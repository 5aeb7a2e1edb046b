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
