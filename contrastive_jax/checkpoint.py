"""Orbax CheckpointManager wrapper: restore-latest-or-init, async save, keep the last K.

Each checkpoint holds two items: `state` (the TrainState pytree, every leaf a global
jax.Array; each process writes its shards) and `meta` (JSON: the config the run was started
with, so a resume into a changed config can be detected).
"""

import glob
import logging
import os
import shutil
import signal
import time
from typing import Any
from collections.abc import Callable

import jax
import orbax.checkpoint as ocp

TMP_SUFFIX = (
  ".orbax-checkpoint-tmp"  # orbax writes <step>.orbax-checkpoint-tmp-<t>, renamed when complete
)
CORRUPT_SUFFIX = "_corrupt"  # unreadable checkpoints are moved to <directory>_corrupt/<step>-<time>
# Test hook: SIGKILL this process while the checkpoint of this step is being written.
TEST_KILL_ENV = "CONTRASTIVE_JAX_TEST_SIGKILL_DURING_SAVE_AT_STEP"


class Checkpointer:
  """Saves and restores the train state under `directory` (W/checkpoints)."""

  def __init__(
    self, directory: str, *, keep: int = 3, save_every: int = 1000, async_save: bool = True
  ):
    self.directory = os.path.abspath(directory)
    self._discard_incomplete()
    options = ocp.CheckpointManagerOptions(
      max_to_keep=keep,
      save_interval_steps=1,
      create=True,
      enable_async_checkpointing=async_save,
      cleanup_tmp_directories=True,
    )
    self._save_every = save_every
    self._mgr = ocp.CheckpointManager(self.directory, options=options, item_names=("state", "meta"))

  def all_steps(self) -> list[int]:
    return sorted(self._mgr.all_steps())

  def latest_step(self) -> int | None:
    return self._mgr.latest_step()

  def save(self, step: int, state: Any, meta: dict, *, force: bool = False) -> bool:
    """Saves at multiples of save_every (or always with force). Returns whether it saved."""
    if not force and (step % self._save_every):
      return False
    if step in self._mgr.all_steps():
      return False
    saved = self._mgr.save(
      step,
      args=ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)),
      force=True,
    )
    if os.environ.get(TEST_KILL_ENV) == str(step):
      _die_while_writing(self.directory, step)
    return saved

  def restore_meta(self, step: int) -> dict:
    out = self._mgr.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
    return dict(out["meta"])

  def restore(self, step: int, abstract_state: Any) -> Any:
    """Restores the state at `step` with the shardings of `abstract_state` (ShapeDtypeStructs)."""
    out = self._mgr.restore(
      step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract_state))
    )
    return out["state"]

  def restore_latest_good(
    self, abstract_state: Any, on_skip: Callable[[int, Exception], None] | None = None
  ):
    """Restores the newest checkpoint that loads; returns (step, state, meta) or None.

    A checkpoint that fails to load (truncated, corrupt, interrupted write) is reported
    through `on_skip` and skipped, so a crash during a save never costs more than that save.
    """
    bad = []
    found = None
    for step in reversed(self.all_steps()):
      try:
        meta = self.restore_meta(step)
        state = self.restore(step, abstract_state)
        found = step, state, meta
        break
      except Exception as e:  # pylint: disable=broad-except
        (on_skip or _log_skip)(step, e)
        bad.append(step)
    if bad:
      self._set_aside(bad)
    return found

  def _set_aside(self, steps: list[int]) -> None:
    """Moves unreadable checkpoints to <directory>_corrupt/ so the run can save those steps again."""
    if jax.process_index() == 0:
      for step in steps:
        dest = os.path.join(self.directory + CORRUPT_SUFFIX, f"{step}-{int(time.time())}")
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        shutil.move(os.path.join(self.directory, str(step)), dest)
        logging.warning(
          "Moved the unreadable checkpoint of step %d to %s (kept for inspection).", step, dest
        )
    _sync("checkpoint_set_aside")
    self._mgr.reload()

  def _discard_incomplete(self) -> None:
    """Removes partial writes (a save interrupted by a crash or SIGKILL), saying so."""
    tmps = sorted(glob.glob(os.path.join(self.directory, f"*{TMP_SUFFIX}*")))
    if tmps:
      logging.warning(
        "Ignoring %d incomplete checkpoint write(s), interrupted before they were "
        "finalised: %s. Removing them; resuming from the last complete checkpoint.",
        len(tmps),
        ", ".join(os.path.basename(t) for t in tmps),
      )
      if jax.process_index() == 0:
        for t in tmps:
          shutil.rmtree(t, ignore_errors=True)
    _sync("checkpoint_discard_incomplete")

  def due(self, step: int) -> bool:
    """Whether save(step) will write a periodic checkpoint."""
    return step % self._save_every == 0

  def last_good(self) -> str:
    """Path of the newest checkpoint once pending writes finished, or a note that there is none."""
    self.wait()
    step = self.latest_step()
    return (
      os.path.join(self.directory, str(step)) if step is not None else "none (no checkpoint yet)"
    )

  def wait(self) -> None:
    self._mgr.wait_until_finished()

  def close(self) -> None:
    self._mgr.wait_until_finished()
    self._mgr.close()


def _sync(name: str) -> None:
  """A barrier of all processes through the coordination service (orbax's long timeout), not a
  device collective: at start-up processes may arrive minutes apart, which gloo would not wait for."""
  if jax.process_count() > 1:
    barrier = ocp.multihost.get_barrier_sync_fn()
    barrier(key=f"contrastive_jax_{name}", timeout_ms=30 * 60 * 1000)


def _die_while_writing(directory: str, step: int) -> None:
  """Test hook: SIGKILL once the tmp directory of `step` has files in it (a save cut short)."""
  pattern = os.path.join(directory, f"{step}{TMP_SUFFIX}*", "**", "*")
  deadline = time.time() + 30
  while time.time() < deadline:
    if glob.glob(pattern, recursive=True):
      break
    time.sleep(0.001)
  logging.warning("Test hook: SIGKILL during the checkpoint write of step %d.", step)
  os.kill(os.getpid(), signal.SIGKILL)


def _log_skip(step: int, e: Exception) -> None:
  logging.warning(
    "Checkpoint at step %d could not be restored (%s: %s); trying an older one.",
    step,
    type(e).__name__,
    str(e)[:300],
  )


def abstract_like(tree: Any) -> Any:
  """ShapeDtypeStructs (with shardings) of a pytree of jax.Arrays."""
  return jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=a.sharding), tree)
