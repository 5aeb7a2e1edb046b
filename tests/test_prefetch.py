"""contrastive_jax.prefetch: same batches in the same order as sharding.global_batch, read ahead in
the background, errors surfaced at the right next()."""

import threading
import time

import jax
import numpy as np
import pytest

from contrastive_jax import prefetch, sharding


def _host_batches(n, rows=8):
  for i in range(n):
    yield {
      "view1": np.full((rows, 4, 4, 3), i, np.float32),
      "label": np.arange(rows, dtype=np.int32) + 100 * i,
    }


@pytest.fixture(scope="module")
def mesh():
  return sharding.make_mesh()


def test_same_batches_in_order(mesh):
  got = list(prefetch.to_device(_host_batches(5), mesh, size=2))
  want = [sharding.global_batch(b, mesh) for b in _host_batches(5)]
  assert len(got) == 5
  for g, w in zip(got, want):
    assert set(g) == set(w)
    for k in w:
      assert g[k].sharding == w[k].sharding
      np.testing.assert_array_equal(jax.device_get(g[k]), jax.device_get(w[k]))


def test_reads_ahead_while_the_consumer_works(mesh):
  pulled = []
  ready = threading.Event()

  def source():
    for i, b in enumerate(_host_batches(10)):
      pulled.append(i)
      if len(pulled) >= 3:
        ready.set()
      yield b

  it = prefetch.to_device(source(), mesh, size=2)
  first = next(it)
  # One batch handed out, two more buffered (size 2) and one being put: at least 3 pulled while
  # the consumer has not asked for the second one.
  assert ready.wait(timeout=30)
  assert 3 <= len(pulled) <= 4
  assert float(jax.device_get(first["view1"])[0, 0, 0, 0]) == 0.0
  it.close()


def test_producer_error_is_raised_in_order(mesh):
  def source():
    yield from _host_batches(2)
    raise RuntimeError("reader broke")

  it = prefetch.to_device(source(), mesh)
  next(it), next(it)
  with pytest.raises(RuntimeError, match="reader broke"):
    next(it)
  with pytest.raises(StopIteration):
    next(it)


def test_bad_size():
  with pytest.raises(ValueError, match="prefetch size"):
    prefetch.to_device(iter([]), None, size=0)


def test_close_stops_the_thread(mesh):
  it = prefetch.to_device(_host_batches(1000), mesh, size=2)
  next(it)
  it.close()
  deadline = time.time() + 10
  while it._thread.is_alive() and time.time() < deadline:
    time.sleep(0.05)
  assert not it._thread.is_alive()


def test_dropping_the_iterator_stops_the_thread(mesh):
  it = prefetch.to_device(_host_batches(1000), mesh, size=2)
  next(it)
  thread = it._thread
  del it  # the training loop's iterator going out of scope
  deadline = time.time() + 10
  while thread.is_alive() and time.time() < deadline:
    time.sleep(0.05)
  assert not thread.is_alive()
