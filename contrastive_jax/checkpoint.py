"""Orbax CheckpointManager wrapper: check-then-restore, async save, keep the last K, checksums.

Each checkpoint `<dir>/<step>` holds two orbax items, `state` (the TrainState pytree, every leaf a
global jax.Array; each process writes its shards) and `meta` (JSON: the config fingerprint the run
was started with), plus `checksums.json` (SHA-256 and size of every file, written by process 0 once
the save is final; orbax stores no checksums of its own).

Restore order (`restore_latest_good`), newest step first, process 0 deciding for every process:
  1. read `meta` and the array metadata (shapes, dtypes), verify the checksums: a read, format or
     checksum failure marks the checkpoint corrupt -> try the next older one;
  2. compare with this run (the caller's `check(meta)`, then array shapes): a difference raises
     IncompatibleCheckpointError and touches nothing on disk;
  3. restore the arrays on every process; a failure on any process marks the step corrupt for all.
Corrupt checkpoints are moved to `<dir>_corrupt/` only once an older one restored (so their step
can be written again); when none restores, NoRestorableCheckpointError lists them and nothing moves.
Directories are epath paths: local or gs:// (orbax writes URIs natively).
"""

import copy
import errno
import json
import logging
import os
import signal
import time
from collections.abc import Callable
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from etils import epath

from contrastive_jax import agree, checksums, workdir as workdir_lib

TMP_SUFFIX = ".orbax-checkpoint-tmp"  # local: orbax writes <step>.orbax-checkpoint-tmp-<t>, renames
COMMIT_FILE = "commit_success.txt"  # object stores: orbax writes <step>/ in place, then this file
CHECKSUMS = checksums.NAME
META_FILE = "metadata"  # the file orbax's JsonCheckpointHandler writes in <step>/meta/
CORRUPT_SUFFIX = "_corrupt"  # corrupt checkpoints are moved to <directory>_corrupt/<step>-<time>
# Test hook: SIGKILL this process while the checkpoint of this step is being written.
TEST_KILL_ENV = "CONTRASTIVE_JAX_TEST_SIGKILL_DURING_SAVE_AT_STEP"
_DISK_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
_OK, _CORRUPT, _MISMATCH, _DONE = 0, 1, 2, 3


class CorruptCheckpointError(Exception):
  """A checkpoint's own files cannot be read, parsed or do not match their checksums."""


class IncompatibleCheckpointError(ValueError):
  """A readable checkpoint written by a different configuration."""


class NoRestorableCheckpointError(RuntimeError):
  """Checkpoints exist and none of them can be restored."""


class CheckpointSaveError(RuntimeError):
  """A save failed (disk full, quota, permissions); the previous checkpoint is intact."""


class Checkpointer:
  """Saves and restores the train state under `directory` (W/checkpoints, local or a URI)."""

  def __init__(self, directory, *, keep: int = 3, save_every: int = 1000, async_save: bool = True):
    self.directory = (
      directory if isinstance(directory, epath.Path) else workdir_lib.resolve(directory)
    )
    self._is_main = jax.process_index() == 0
    self._discard_incomplete()
    _write_whole_shards_in_one_process()
    options = ocp.CheckpointManagerOptions(
      max_to_keep=keep,
      save_interval_steps=1,
      create=True,
      enable_async_checkpointing=async_save,
      cleanup_tmp_directories=True,
    )
    self._save_every = save_every
    self._unsummed: list[int] = []  # saved steps whose checksums are not written yet
    self._previous: int | None = None  # the newest checkpoint before the pending save
    # Handlers up front, so the items restore without a prior save in this process.
    self._mgr = ocp.CheckpointManager(
      self.directory,
      options=options,
      item_handlers={
        "state": ocp.StandardCheckpointHandler(),
        "meta": ocp.JsonCheckpointHandler(),
      },
    )

  def path(self, step: int) -> epath.Path:
    return self.directory / str(step)

  def all_steps(self) -> list[int]:
    return sorted(self._mgr.all_steps())

  def latest_step(self) -> int | None:
    return self._mgr.latest_step()

  # --------------------------------------------------------------------------- save

  def save(self, step: int, state: Any, meta: dict, *, force: bool = False) -> bool:
    """Saves at multiples of save_every (or always with force). Returns whether it saved.

    Raises:
      CheckpointSaveError: the write failed (e.g. disk full); earlier checkpoints are intact.
    """
    if not force and (step % self._save_every):
      return False
    self.wait()  # orbax waits for the previous save anyway; its errors and checksums land here
    if step in self._mgr.all_steps():
      return False
    previous = self.latest_step()
    try:
      saved = self._mgr.save(
        step,
        args=ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)),
        force=True,
      )
    except Exception as e:  # pylint: disable=broad-except
      raise _save_error(step, self.directory, previous, e) from None
    self._unsummed.append(step)
    self._previous = previous
    if os.environ.get(TEST_KILL_ENV) == str(step):
      _die_while_writing(self.directory, step)
    return saved

  def wait(self) -> None:
    """Blocks until pending saves are final, then records their checksums."""
    try:
      self._mgr.wait_until_finished()
    except Exception as e:  # pylint: disable=broad-except  # an async write failed
      step = self._unsummed[-1] if self._unsummed else -1
      self._unsummed = []
      raise _save_error(step, self.directory, self._previous, e) from None
    for step in self._unsummed:
      if self._is_main and self.path(step).exists():
        try:
          checksums.write(self.path(step))
        except OSError as e:
          raise _save_error(step, self.directory, self._previous, e) from None
    self._unsummed = []

  # --------------------------------------------------------------------------- restore

  def restore_meta(self, step: int) -> dict:
    """The meta item through orbax (a collective: every process must call it)."""
    out = self._mgr.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
    return dict(out["meta"])

  def read_meta(self, step: int) -> dict:
    """The meta item read as a file by this process alone (orbax's restore is a collective, so
    process 0 cannot use it to judge a checkpoint on its own)."""
    return json.loads((self.path(step) / "meta" / META_FILE).read_text())

  def restore(self, step: int, abstract_state: Any) -> Any:
    """Restores the state at `step` with the shardings of `abstract_state` (ShapeDtypeStructs)."""
    out = self._mgr.restore(
      step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract_state))
    )
    return out["state"]

  def verify(self, step: int) -> bool:
    """Checks every file of `step` against its checksums.json (see checksums.verify)."""
    try:
      return checksums.verify(self.path(step))
    except checksums.Mismatch as e:
      raise CorruptCheckpointError(str(e)) from None

  def array_differences(self, step: int, abstract_state: Any) -> list[str]:
    """Arrays whose shape or dtype in the checkpoint differs from `abstract_state` (metadata only,
    read by this process alone)."""
    saved = _flat_shapes(ocp.StandardCheckpointHandler().metadata(self.path(step) / "state"))
    if not saved:  # unreadable or missing array metadata: the checkpoint's own files are bad
      raise CorruptCheckpointError("the state item has no readable array metadata")
    now = _flat_shapes(abstract_state)
    out = [
      f"{k}: checkpoint has {saved[k]}, this config has {now[k]}"
      for k in sorted(saved.keys() & now.keys())
      if saved[k] != now[k]
    ]
    out += [f"{k}: only in the checkpoint" for k in sorted(saved.keys() - now.keys())]
    out += [f"{k}: only in this config" for k in sorted(now.keys() - saved.keys())]
    return out

  def restore_latest_good(self, abstract_state: Any, check: Callable[[dict], None] | None = None):
    """Restores the newest good checkpoint; returns (step, state, meta), or None when there is none.

    Args:
      abstract_state: ShapeDtypeStructs (with shardings) of the state this run builds.
      check: called with a checkpoint's meta before its arrays are read; raises
        IncompatibleCheckpointError when the checkpoint belongs to another configuration.

    Raises:
      IncompatibleCheckpointError: the newest readable checkpoint does not fit this run.
      NoRestorableCheckpointError: checkpoints exist and none restores.
    """
    candidates = list(reversed(self.all_steps())) if self._is_main else []
    failures: list[tuple[int, str]] = []
    while True:
      step, code, error = _DONE, _DONE, None
      if self._is_main and candidates:
        step = candidates.pop(0)
        code, error = self._judge(step, abstract_state, check)
      step, code = agree.from_main("checkpoint_judge", step, code)
      if code == _DONE:
        break
      if code == _MISMATCH:
        raise (
          error
          if error is not None
          else IncompatibleCheckpointError(
            f"Process 0 found the checkpoint of step {step} incompatible with this configuration "
            f"(its log names the fields); nothing on disk was changed."
          )
        )
      if code == _OK:
        try:
          state, meta, ok = self.restore(step, abstract_state), self.restore_meta(step), True
        except Exception as e:  # pylint: disable=broad-except  # read or format failure
          error, ok = e, False
        if agree.all_true("checkpoint_restore", ok):
          if failures:
            self._set_aside([s for s, _ in failures])
          return step, state, meta
        code = _CORRUPT
      why = f"{type(error).__name__}: {str(error)[:300]}" if error else "see process 0's log"
      failures.append((step, why))
      logging.warning(
        "Checkpoint at step %d could not be restored (%s); trying an older one.", step, why
      )
    if not failures:
      return None
    raise NoRestorableCheckpointError(
      f"None of the {len(failures)} checkpoint(s) in {os.fspath(self.directory)} can be restored:\n  "
      + "\n  ".join(f"step {s}: {why}" for s, why in failures)
      + "\nNothing was moved or deleted. To start over deliberately, use a new --workdir (or move "
      "these checkpoints away); to recover, restore the files from a copy."
    )

  def _judge(self, step, abstract_state, check) -> tuple[int, Exception | None]:
    """Process 0's verdict on one checkpoint from its metadata and checksums; reads no arrays and
    calls no collective (the other processes wait for the verdict)."""
    try:
      meta = self.read_meta(step)
      verified = self.verify(step)
      differences = self.array_differences(step, abstract_state)
    except Exception as e:  # pylint: disable=broad-except  # unreadable files: corrupt
      return _CORRUPT, e
    if not verified:
      logging.warning("Checkpoint at step %d has no %s; restoring it unverified.", step, CHECKSUMS)
    try:
      if check is not None:
        check(meta)
      if differences:
        raise IncompatibleCheckpointError(
          f"The checkpoint of step {step} in {os.fspath(self.directory)} has arrays of other "
          f"shapes than this configuration builds:\n  "
          + "\n  ".join(differences[:10])
          + (f"\n  ... and {len(differences) - 10} more" if len(differences) > 10 else "")
          + "\nNothing on disk was changed. Use a new --workdir for the new configuration, or "
          "restore the old values."
        )
    except IncompatibleCheckpointError as e:
      return _MISMATCH, e
    return _OK, None

  def _set_aside(self, steps: list[int]) -> None:
    """Moves corrupt checkpoints to <directory>_corrupt/ so the run can save those steps again."""
    if self._is_main:
      for step in steps:
        dest = epath.Path(os.fspath(self.directory) + CORRUPT_SUFFIX) / f"{step}-{int(time.time())}"
        _move_tree(self.path(step), dest)
        logging.warning(
          "Moved the corrupt checkpoint of step %d to %s (kept for inspection).", step, dest
        )
    agree.sync("checkpoint_set_aside")
    self._mgr.reload()

  def _discard_incomplete(self) -> None:
    """Removes partial writes (a save interrupted by a crash or SIGKILL), saying so."""
    tmps = _incomplete(self.directory)
    if tmps:
      logging.warning(
        "Ignoring %d incomplete checkpoint write(s), interrupted before they were "
        "finalised: %s. Removing them; resuming from the last complete checkpoint.",
        len(tmps),
        ", ".join(t.name for t in tmps),
      )
      if self._is_main:
        for t in tmps:
          t.rmtree(missing_ok=True)
    agree.sync("checkpoint_discard_incomplete")

  def due(self, step: int) -> bool:
    """Whether save(step) will write a periodic checkpoint."""
    return step % self._save_every == 0

  def last_good(self) -> str:
    """Path of the newest checkpoint once pending writes finished, or a note that there is none."""
    self.wait()
    step = self.latest_step()
    return os.fspath(self.path(step)) if step is not None else "none (no checkpoint yet)"

  def close(self) -> None:
    """Waits for pending saves and closes; a failure is logged, not raised (close runs in `finally`
    blocks, where it must not replace the error that ended the run; callers `wait()` first)."""
    try:
      self.wait()
    except CheckpointSaveError as e:
      logging.error("%s", e)
    try:
      self._mgr.close()
    except Exception as e:  # pylint: disable=broad-except
      logging.error("Closing the checkpoint manager failed: %s: %s", type(e).__name__, e)


# ----------------------------------------------------------------------------- helpers


def _write_whole_shards_in_one_process() -> None:
  """Single process: orbax saves each replicated array whole from one device, unsliced.

  Why: orbax's default on CPU and TPU ("replica-parallel") has every replica write 1/R of a
  replicated array, cut out on its device by an eager slice, and jax compiles that slice once per
  (shape, device): the first save of the micro ResNet's state on 8 devices compiled 160 programs
  (6.4 s of an 8.0 s save; a preemption save pays it inside the grace period). In one process the
  replicas are all local, so the same bytes are written either way; with several processes the
  default stays, as there it spreads the writing of replicated arrays over the hosts.
  """
  if jax.process_count() > 1:
    return
  arrays = ocp.type_handlers.get_type_handler(jax.Array)
  if getattr(arrays, "_use_replica_parallel", False):
    arrays = copy.copy(arrays)  # the default's metadata store and options, one flag changed
    arrays._use_replica_parallel = False  # pylint: disable=protected-access
    absl_logger = logging.getLogger("absl")  # orbax warns on every override; this one is meant
    level = absl_logger.level
    absl_logger.setLevel(logging.ERROR)
    try:
      ocp.type_handlers.register_type_handler(jax.Array, arrays, override=True)
    finally:
      absl_logger.setLevel(level)


def _save_error(step: int, directory, previous: int | None, e: Exception) -> CheckpointSaveError:
  full = isinstance(e, OSError) and e.errno in _DISK_FULL or "No space left" in str(e)
  kept = (
    f"the checkpoint of step {previous} is intact and the next start resumes from it"
    if previous is not None
    else "no earlier checkpoint exists"
  )
  return CheckpointSaveError(
    f"Could not write the checkpoint of step {step} to {os.fspath(directory)} "
    f"({'disk full: ' if full else ''}{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}); "
    f"{kept}. Free space (or fix the error) and run the same command again."
  )


def _flat_shapes(tree: Any) -> dict[str, tuple]:
  """{'params/encoder/conv/kernel': (shape, dtype)} for arrays and orbax ArrayMetadata alike."""

  def is_leaf(x):
    return hasattr(x, "shape") and hasattr(x, "dtype")

  out = {}
  for path, leaf in jax.tree_util.tree_flatten_with_path(tree, is_leaf=is_leaf)[0]:
    if not is_leaf(leaf):
      continue
    name = "/".join(str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k)))) for k in path)
    out[name] = (tuple(leaf.shape), str(np.dtype(leaf.dtype)))
  return out


def _incomplete(directory: epath.Path) -> list[epath.Path]:
  if not directory.exists():
    return []
  out = []
  for p in directory.iterdir():
    if TMP_SUFFIX in p.name:
      out.append(p)
    elif workdir_lib.is_uri(directory) and p.name.isdigit() and not (p / COMMIT_FILE).exists():
      out.append(p)
  return sorted(out, key=lambda p: p.name)


def _move_tree(src: epath.Path, dest: epath.Path) -> None:
  dest.parent.mkdir(parents=True, exist_ok=True)
  if not workdir_lib.is_uri(src):
    os.rename(os.fspath(src), os.fspath(dest))
    return
  for rel in checksums.files(src):  # object stores have no directory rename: copy, then delete
    (dest / rel).parent.mkdir(parents=True, exist_ok=True)
    (src / rel).copy(dest / rel)
  src.rmtree()


def _die_while_writing(directory: epath.Path, step: int) -> None:
  """Test hook: SIGKILL once the write of `step` has files on disk but is not final."""
  deadline = time.time() + 30
  while time.time() < deadline:
    try:
      pending = [p for p in _incomplete(directory) if p.name.split(".")[0] == str(step)]
      if any(checksums.files(p) for p in pending):
        break
    except OSError:  # the write renamed or created a directory while it was being listed
      pass
    time.sleep(0.001)
  logging.warning("Test hook: SIGKILL during the checkpoint write of step %d.", step)
  os.kill(os.getpid(), signal.SIGKILL)


def abstract_like(tree: Any) -> Any:
  """ShapeDtypeStructs (with shardings) of a pytree of jax.Arrays."""
  return jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=a.sharding), tree)
