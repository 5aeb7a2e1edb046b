"""Orbax CheckpointManager wrapper: restore-latest-or-init, async save, keep the last K.

Each checkpoint holds two items: `state` (the TrainState pytree, every leaf a global
jax.Array; each process writes its shards) and `meta` (JSON: the config the run was started
with, so a resume into a changed config can be detected).
"""
import logging
import os
from typing import Any, Callable

import jax
import orbax.checkpoint as ocp


class Checkpointer:
  """Saves and restores the train state under `directory` (W/checkpoints)."""

  def __init__(self, directory: str, *, keep: int = 3, save_every: int = 1000,
               async_save: bool = True):
    self.directory = os.path.abspath(directory)
    options = ocp.CheckpointManagerOptions(
        max_to_keep=keep, save_interval_steps=1, create=True,
        enable_async_checkpointing=async_save, cleanup_tmp_directories=True)
    self._save_every = save_every
    self._mgr = ocp.CheckpointManager(self.directory, options=options,
                                      item_names=("state", "meta"))

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
    return self._mgr.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)), force=True)

  def restore_meta(self, step: int) -> dict:
    out = self._mgr.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
    return dict(out["meta"])

  def restore(self, step: int, abstract_state: Any) -> Any:
    """Restores the state at `step` with the shardings of `abstract_state` (ShapeDtypeStructs)."""
    out = self._mgr.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract_state)))
    return out["state"]

  def restore_latest_good(self, abstract_state: Any,
                          on_skip: Callable[[int, Exception], None] | None = None):
    """Restores the newest checkpoint that loads; returns (step, state, meta) or None.

    A checkpoint that fails to load (truncated, corrupt, interrupted write) is reported
    through `on_skip` and skipped, so a crash during a save never costs more than that save.
    """
    for step in reversed(self.all_steps()):
      try:
        meta = self.restore_meta(step)
        state = self.restore(step, abstract_state)
        return step, state, meta
      except Exception as e:  # pylint: disable=broad-except
        (on_skip or _log_skip)(step, e)
    return None

  def wait(self) -> None:
    self._mgr.wait_until_finished()

  def close(self) -> None:
    self._mgr.wait_until_finished()
    self._mgr.close()


def _log_skip(step: int, e: Exception) -> None:
  logging.warning("Checkpoint at step %d could not be restored (%s: %s); trying an older one.",
                  step, type(e).__name__, str(e)[:300])


def abstract_like(tree: Any) -> Any:
  """ShapeDtypeStructs (with shardings) of a pytree of jax.Arrays."""
  return jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=a.sharding), tree)
