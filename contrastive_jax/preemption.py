"""Preemption: stop every process at the same step, so that all of them save that step and exit.

Sources of a stop request, checked once per step by `PreemptionWatcher.should_stop(step)`:
- several processes with JAX's preemption service (on by default after jax.distributed.initialize;
  it catches SIGTERM and TPU maintenance notices on any host and propagates them):
  `multihost_utils.reached_preemption_sync_point(step)` turns true at the same step on every host;
- one process: SIGTERM (or SIGINT), caught by a Python handler that sets a flag;
- several processes without the service: the flag of every process is combined by a small all-gather
  every `agree_every` steps, so all processes stop at the same step.

Test hook: CONTRASTIVE_JAX_TEST_SIGTERM_AT_STEP=k makes process 0 send itself a real SIGTERM after
step k.
"""

import logging
import os
import signal
import threading

import jax
import numpy as np

TEST_SIGTERM_ENV = "CONTRASTIVE_JAX_TEST_SIGTERM_AT_STEP"


def _preemption_service_available() -> bool:
  if jax.process_count() == 1:
    return False
  try:
    from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top

    multihost_utils.reached_preemption_sync_point(-1)
    return True
  except RuntimeError:  # jax_enable_preemption_service is off
    return False


class Interrupted(Exception):
  """A stop request arrived during an evaluation; raised between two of its batches."""


class PreemptionWatcher:
  """Answers `should_stop(step)` identically on every process; install once per run, then close()."""

  def __init__(self, agree_every: int = 10):
    self.agree_every = max(1, int(agree_every))
    self.signalled = False
    self._previous = {}
    self._use_service = _preemption_service_available()
    hook = os.environ.get(TEST_SIGTERM_ENV)
    self._test_step = int(hook) if hook else None
    if not self._use_service and threading.current_thread() is threading.main_thread():
      for sig in (signal.SIGTERM, signal.SIGINT):
        self._previous[sig] = signal.signal(sig, self._on_signal)

  def _on_signal(self, signum, frame):  # pylint: disable=unused-argument
    if self.signalled and signum == signal.SIGINT:
      raise KeyboardInterrupt  # a second Ctrl-C stops at once, without saving
    self.signalled = True
    logging.warning(
      "Received %s: finishing this step, saving a checkpoint, then exiting.",
      signal.Signals(signum).name,
    )

  def should_stop(self, step: int) -> bool:
    """True (on every process at the same `step`) when the run must save and exit after `step`.

    Call it after every train step with the number of completed steps.
    """
    if self._test_step is not None and step == self._test_step and jax.process_index() == 0:
      os.kill(os.getpid(), signal.SIGTERM)
    if self._use_service:
      from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top

      return bool(multihost_utils.reached_preemption_sync_point(step))
    if jax.process_count() == 1:
      return self.signalled
    if step % self.agree_every:
      return False
    from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top

    flags = multihost_utils.process_allgather(np.array([self.signalled], np.int32))
    return bool(np.max(flags))

  def requested_now(self) -> bool:
    """Whether a stop was requested, the same answer on every process; for loops outside the
    train step (evaluations), called at the same point on every process (e.g. once per batch).

    With JAX's preemption service (multi-host default) the notice is only visible at a training
    step's sync point, so this returns False and the stop happens after the evaluation.
    """
    if self._use_service:
      return False
    if jax.process_count() == 1:
      return self.signalled
    from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top

    flags = multihost_utils.process_allgather(np.array([self.signalled], np.int32))
    return bool(np.max(flags))

  def interruptible(self, batches):
    """`batches`, raising Interrupted before the next batch once a stop is requested."""
    for batch in batches:
      if self.requested_now():
        raise Interrupted()
      yield batch

  def close(self) -> None:
    for sig, handler in self._previous.items():
      signal.signal(sig, handler)
    self._previous = {}
