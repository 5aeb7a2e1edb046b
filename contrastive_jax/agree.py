"""Multi-host agreement: process 0 decides, every process follows; none goes on alone or hangs.

Each helper first meets the other processes at a coordination-service barrier (orbax's, with a long
timeout), then exchanges a few integers with a device collective: processes may arrive minutes apart
(process 0 verifying checksums, reading a lock on a bucket), which a gloo collective would not wait
for, while the barrier does. With one process every helper returns its input.
"""

import itertools

import jax
import numpy as np
import orbax.checkpoint as ocp

_TIMEOUT_MS = 30 * 60 * 1000
# A coordination-service barrier id can be used once per job. Every process makes the same
# sequence of agreement calls (or they would not meet at all), so numbering the calls in each
# process gives every barrier the same fresh id on all processes. The one piece of module state
# here, on purpose: it counts calls of the process, whatever object makes them.
_CALLS = itertools.count()


def sync(name: str) -> None:
  """A barrier of all processes through the coordination service, not a device collective."""
  if jax.process_count() > 1:
    barrier = ocp.multihost.get_barrier_sync_fn()
    barrier(key=f"contrastive_jax_{name}_{next(_CALLS)}", timeout_ms=_TIMEOUT_MS)


def from_main(name: str, *values: int) -> tuple[int, ...]:
  """Process 0's integer `values` on every process."""
  if jax.process_count() == 1:
    return tuple(int(v) for v in values)
  from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top

  sync(name)
  got = multihost_utils.broadcast_one_to_all(np.asarray(values, np.int64))
  return tuple(int(v) for v in np.asarray(got))


def all_true(name: str, ok: bool) -> bool:
  """True on every process when `ok` holds on every process."""
  if jax.process_count() == 1:
    return bool(ok)
  from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top

  sync(name)
  return bool(np.min(multihost_utils.process_allgather(np.asarray([int(ok)], np.int32))))
