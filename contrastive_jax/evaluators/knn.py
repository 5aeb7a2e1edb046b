"""Weighted k-nearest-neighbour classification on frozen features.

The protocol of Wu et al. 2018 ("Unsupervised Feature Learning via Non-Parametric Instance
Discrimination", InstDisc), as used by solo-learn and lightly: features are L2-normalised, the train
split is the memory bank, each test example takes its k most cosine-similar bank entries and every
neighbour votes for its label with weight exp(sim / temperature); the predicted class is the one
with the largest summed vote.

Several k are scored in one pass: the top max(ks) neighbours are found once and each k uses the
first k of them.

Distributed: with a mesh whose axis 'data' has several devices, the memory bank is sharded over that
axis. Each device finds the top-k of ITS bank rows for the current test chunk, the (similarity,
label) candidates of all devices are all_gather-ed, and the global top-k is the top-k of the
candidates. The global top-k is always among the union of the local top-k, so the answer equals the
one-device computation.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from contrastive_jax.sharding import DATA_AXIS as AXIS


def l2_normalize(x: np.ndarray, eps: float = 1e-12) -> np.ndarray:
  """Row-wise L2 normalisation in float32 NumPy (rows of zeros stay zero)."""
  x = np.asarray(x, dtype=np.float32)
  return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), eps)


def _local_topk(test, bank, bank_labels, bank_valid, k):
  """Top-k bank rows by cosine similarity; padded bank rows score -inf."""
  sims = test @ bank.T  # (b, n)
  sims = jnp.where(bank_valid[None, :], sims, -jnp.inf)
  top_sims, top_idx = jax.lax.top_k(sims, k)
  return top_sims, bank_labels[top_idx]


def _votes(top_sims, top_labels, test_labels, *, ks, num_classes, temperature):
  """Correct-prediction flags (len(ks), b) from the (b, max(ks)) neighbour lists (sorted by similarity)."""
  b, kmax = top_sims.shape
  weights = jnp.exp(top_sims / temperature)
  # -inf similarities (a bank smaller than k) give weight 0 and never vote.
  weights = jnp.where(jnp.isfinite(top_sims), weights, 0.0)
  rows = jnp.broadcast_to(jnp.arange(b)[:, None], (b, kmax))
  position = jnp.arange(kmax)[None, :]
  correct = []
  for k in ks:
    # Scatter-add keeps memory at (b, num_classes) per k instead of a (b, k, num_classes) one-hot.
    votes = (
      jnp.zeros((b, num_classes), jnp.float32)
      .at[rows, top_labels]
      .add(jnp.where(position < k, weights, 0.0))
    )
    correct.append(jnp.argmax(votes, axis=-1) == test_labels)
  return jnp.stack(correct)


@functools.partial(jax.jit, static_argnames=("ks", "num_classes", "temperature", "kmax"))
def _knn_chunk_single(
  bank, bank_labels, bank_valid, test, test_labels, *, ks, num_classes, temperature, kmax
):
  top_sims, top_labels = _local_topk(test, bank, bank_labels, bank_valid, kmax)
  return _votes(
    top_sims, top_labels, test_labels, ks=ks, num_classes=num_classes, temperature=temperature
  )


@functools.lru_cache(maxsize=16)
def _sharded_chunk_fn(mesh, ks, num_classes, temperature, kmax, klocal):
  """jit(shard_map) program: local top-k per bank shard, all_gather, global top-k merge, votes."""

  def per_device(bank, bank_labels, bank_valid, test):
    sims, labels = _local_topk(test, bank, bank_labels, bank_valid, klocal)
    # (devices, b, klocal) -> (b, devices * klocal); identical on every device after the gather.
    sims = jax.lax.all_gather(sims, AXIS, axis=1, tiled=True)
    labels = jax.lax.all_gather(labels, AXIS, axis=1, tiled=True)
    top_sims, pos = jax.lax.top_k(sims, kmax)
    return top_sims, jnp.take_along_axis(labels, pos, axis=1)

  # check_vma=False: after all_gather the result is the same on every device, which out_specs=P()
  # states; the vma type system would otherwise need an 'invariant' all_gather whose spelling varies
  # across jax versions.
  merged = jax.shard_map(
    per_device,
    mesh=mesh,
    in_specs=(P(AXIS), P(AXIS), P(AXIS), P()),
    out_specs=(P(), P()),
    check_vma=False,
  )

  @jax.jit
  def run(bank, bank_labels, bank_valid, test, test_labels):
    top_sims, top_labels = merged(bank, bank_labels, bank_valid, test)
    return _votes(
      top_sims, top_labels, test_labels, ks=ks, num_classes=num_classes, temperature=temperature
    )

  return run


def _global_array(x: np.ndarray, mesh, spec) -> jax.Array:
  """A global jax.Array from a host array every process holds in full (works multi-host too)."""
  sharding = NamedSharding(mesh, spec)
  return jax.make_array_from_callback(x.shape, sharding, lambda idx: x[idx])


def knn_classify(
  train_features,
  train_labels,
  test_features,
  test_labels,
  *,
  num_classes: int,
  ks: Sequence[int] = (200,),
  temperature: float = 0.07,
  mesh: jax.sharding.Mesh | None = None,
  test_batch_size: int = 256,
) -> dict[str, float]:
  """Weighted kNN top-1 accuracy of test features against a train-feature memory bank.

  Args:
    train_features: (n_train, d) memory bank (NumPy or jax); L2-normalised here.
    train_labels: (n_train,) int labels in [0, num_classes).
    test_features: (n_test, d) queries; L2-normalised here.
    test_labels: (n_test,) int labels.
    num_classes: number of classes.
    ks: neighbour counts to score, all from one top-max(ks) search. A k above n_train uses all of
      the bank.
    temperature: vote weight exp(sim / temperature) (0.07 as in InstDisc / solo-learn).
    mesh: optional mesh with an axis 'data'; when it has more than one device the bank is sharded
      over it.
    test_batch_size: test rows per step (the (test_batch_size, n_train / devices) similarity block bounds memory).

  Returns:
    {'knn_top1_k{k}': accuracy in [0, 1] for each k, 'knn_top1': the value for ks[0]}.
  """
  ks = tuple(int(k) for k in ks)
  if not ks or min(ks) < 1:
    raise ValueError(f"knn ks must be positive integers, got {ks}")
  if temperature <= 0:
    raise ValueError(f"knn temperature must be > 0, got {temperature}")
  bank = l2_normalize(train_features)
  bank_labels = np.asarray(train_labels, dtype=np.int32).reshape(-1)
  test = l2_normalize(test_features)
  test_labels = np.asarray(test_labels, dtype=np.int32).reshape(-1)
  if bank.shape[0] != bank_labels.shape[0] or test.shape[0] != test_labels.shape[0]:
    raise ValueError("knn: features and labels must have the same number of rows")
  if bank.shape[1] != test.shape[1]:
    raise ValueError(f"knn: train dim {bank.shape[1]} != test dim {test.shape[1]}")
  for name, lab in (("train", bank_labels), ("test", test_labels)):
    if lab.size and (lab.min() < 0 or lab.max() >= num_classes):
      raise ValueError(
        f"knn: {name} labels must be in [0, num_classes={num_classes}), got [{lab.min()}, {lab.max()}]"
      )
  n_train, n_test = bank.shape[0], test.shape[0]
  if n_train == 0 or n_test == 0:
    raise ValueError("knn: empty train or test features")
  kmax = min(max(ks), n_train)

  num_devices = 1 if mesh is None else mesh.shape[AXIS]
  # Pad the bank to a multiple of the device count; padded rows get similarity -inf and never win.
  n_pad = -n_train % num_devices
  bank_valid = np.concatenate([np.ones(n_train, bool), np.zeros(n_pad, bool)])
  bank = np.concatenate([bank, np.zeros((n_pad, bank.shape[1]), np.float32)])
  bank_labels = np.concatenate([bank_labels, np.zeros(n_pad, np.int32)])

  if num_devices == 1:
    arrays = tuple(jnp.asarray(a) for a in (bank, bank_labels, bank_valid))
    step = functools.partial(
      _knn_chunk_single, ks=ks, num_classes=num_classes, temperature=float(temperature), kmax=kmax
    )
    place = jnp.asarray
  else:
    arrays = tuple(_global_array(a, mesh, P(AXIS)) for a in (bank, bank_labels, bank_valid))
    klocal = min(kmax, bank.shape[0] // num_devices)
    step = _sharded_chunk_fn(mesh, ks, num_classes, float(temperature), kmax, klocal)
    place = lambda a: _global_array(a, mesh, P())  # noqa: E731

  batch = max(1, min(int(test_batch_size), n_test))
  correct = np.zeros(len(ks), np.int64)
  for start in range(0, n_test, batch):
    chunk = test[start : start + batch]
    chunk_labels = test_labels[start : start + batch]
    real = chunk.shape[0]
    if real < batch:  # pad the last chunk so that one compiled program serves every chunk
      chunk = np.concatenate([chunk, np.zeros((batch - real, chunk.shape[1]), np.float32)])
      chunk_labels = np.concatenate([chunk_labels, np.full(batch - real, -1, np.int32)])
    flags = np.asarray(step(*arrays, place(chunk), place(chunk_labels)))
    correct += flags[:, :real].sum(axis=1)

  result = {f"knn_top1_k{k}": float(c) / n_test for k, c in zip(ks, correct)}
  result["knn_top1"] = result[f"knn_top1_k{ks[0]}"]
  return result
