"""Host-to-device prefetch (double buffering) for the training loop.

`to_device(host_batches, mesh, size=2)` turns an iterator of host batches (dicts of numpy, this
process's rows) into an iterator of global jax.Arrays (sharding.global_batch), produced by a
background thread up to `size` batches ahead: while step t runs, batch t + 1 is read from tf.data
and copied to the devices, so neither the host read nor the transfer sits between two steps
(Flax's `jax_utils.prefetch_to_device` idea, for jit over a Mesh with global arrays).

Order and contents are exactly the input's; an exception in the producer is raised by the next()
that would have returned that batch. The thread is a daemon and stops when the iterator is closed
or garbage-collected; batches it read ahead are dropped (the data stream is a pure function of the
step, so a resumed run reads them again).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator, Mapping
from typing import Any

from contrastive_jax import sharding

_DONE = object()


def _put(q: queue.Queue, stop: threading.Event, item) -> bool:
  while not stop.is_set():
    try:
      q.put(item, timeout=0.1)
      return True
    except queue.Full:
      continue
  return False


def _produce(it, mesh, q: queue.Queue, stop: threading.Event):
  # Holds no reference to the DevicePrefetcher, so dropping the iterator runs its __del__ (stop).
  try:
    for host in it:
      if not _put(q, stop, ("ok", sharding.global_batch(host, mesh))):
        return
    _put(q, stop, ("ok", _DONE))
  except BaseException as e:  # noqa: BLE001 (handed to the consumer, raised there)
    _put(q, stop, ("error", e))


class DevicePrefetcher:
  """Iterator of global batches, `size` of them in flight (see the module docstring)."""

  def __init__(self, host_batches: Iterator[Mapping[str, Any]], mesh, size: int = 2):
    if size < 1:
      raise ValueError(f"prefetch size must be >= 1, got {size}.")
    self._queue: queue.Queue = queue.Queue(maxsize=size)
    self._stop = threading.Event()
    self._thread = threading.Thread(
      target=_produce,
      args=(iter(host_batches), mesh, self._queue, self._stop),
      name="device-prefetch",
      daemon=True,
    )
    self._thread.start()

  def __iter__(self):
    return self

  def __next__(self):
    if self._stop.is_set():
      raise StopIteration
    kind, item = self._queue.get()
    if kind == "error":
      self.close()
      raise item
    if item is _DONE:
      self.close()
      raise StopIteration
    return item

  def close(self):
    self._stop.set()

  def __del__(self):
    stop = getattr(self, "_stop", None)  # None when __init__ raised (e.g. a bad size) before it
    if stop is not None:
      stop.set()


def to_device(host_batches: Iterator[Mapping[str, Any]], mesh, size: int = 2) -> DevicePrefetcher:
  """Global batches from host batches, `size` ahead in a background thread (double buffering)."""
  return DevicePrefetcher(host_batches, mesh, size)
