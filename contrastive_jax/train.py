"""The one generic pre-training loop: mesh, data, init or resume, step loop, log, checkpoint, eval.

A method plugs in through contrastive_jax.methods (see methods/base.py); nothing here knows
which method runs.
"""

import json
import logging
import os
import time
from typing import Any

import jax

from contrastive_jax import (
  agree,
  checkpoint,
  fingerprint as fingerprint_lib,
  grad_cache,
  joblock,
  metrics as metrics_lib,
  methods,
  nonfinite,
  optim,
  prefetch,
  preemption,
  profiling,
  sharding,
  validate,
  workdir as workdir_lib,
)
from contrastive_jax import step as step_lib
from contrastive_jax.data import source
from contrastive_jax.protocols import monitors


# ----------------------------------------------------------------------------- config checks


def resolve_schedule(config, train_size: int) -> tuple[int, int]:
  """(steps_per_epoch, total_steps); total_steps wins when > 0.

  From epochs, the official rounding: total = train_size * total_epochs // batch_size + 1
  (google-research/simclr tf2/model.py get_train_steps; docs/fidelity.md).
  """
  steps_per_epoch = train_size // config.batch_size
  if steps_per_epoch < 1:
    raise ValueError(
      f"config.batch_size={config.batch_size} is larger than the training split "
      f"({train_size} examples); lower config.batch_size."
    )
  if config.total_steps and config.total_steps > 0:
    return steps_per_epoch, int(config.total_steps)
  if config.total_epochs <= 0:
    raise ValueError("Set config.total_steps > 0 or config.total_epochs > 0.")
  return steps_per_epoch, max(1, int(train_size * config.total_epochs // config.batch_size) + 1)


# The resume check lives in contrastive_jax/fingerprint.py; these names stay for callers.
config_fingerprint = fingerprint_lib.fingerprint
check_resume = fingerprint_lib.check_resume


# ----------------------------------------------------------------------------- evaluation


def run_monitors(method, state, config, mesh, data, watcher=None) -> dict:
  """Every evaluator the method declares (method.evaluators), by name from protocols/monitors.py.

  With a `watcher`, a stop request (SIGTERM) raises preemption.Interrupted between two evaluation
  batches, so a long kNN pass never outlasts a preemption's grace period.
  """
  if watcher is not None:
    data = _InterruptibleData(data, watcher)
  out = {}
  for name in method.evaluators:
    out.update(getattr(monitors, name)(method, state, config, mesh, data))
  return out


class _InterruptibleData:
  """A DataSource whose eval_batches check for a stop request before each batch."""

  def __init__(self, data, watcher):
    self._data, self._watcher = data, watcher

  def __getattr__(self, name):
    return getattr(self._data, name)

  def eval_batches(self, *args, **kwargs):
    return self._watcher.interruptible(self._data.eval_batches(*args, **kwargs))


# ----------------------------------------------------------------------------- the loop


def check_workdir(workdir) -> None:
  """Fails before any training when this process cannot write to workdir (checkpoints, logs)."""
  path = workdir if not isinstance(workdir, str) else workdir_lib.resolve(workdir)
  workdir_lib.check_writable(path, jax.process_index())


def take_lock(workdir) -> joblock.Lock | None:
  """Process 0 takes the workdir lock; every process raises when it is refused (one job per
  workdir, see contrastive_jax/joblock.py). Returns the lock on process 0, None elsewhere."""
  lock, error = None, None
  if jax.process_index() == 0:
    lock = joblock.Lock(workdir)
    try:
      lock.acquire()
    except joblock.WorkdirLockedError as e:
      lock, error = None, e
  (refused,) = agree.from_main("workdir_lock", int(error is not None))
  if refused:
    raise error or joblock.WorkdirLockedError(
      f"Another job holds the workdir {os.fspath(workdir)} (process 0's log names it)."
    )
  return lock


def train_and_evaluate(config, workdir: str) -> dict:
  """Pre-trains config.method; resumes from workdir; returns the final results dict.

  Order: config validation (no data, no compilation), the workdir (local or a URI) and its job
  lock, data and model, then checkpoint metadata and the config fingerprint, and only then the
  arrays. Fault tolerance: docs/fault_tolerance.md.
  """
  validate.check(config)
  path = workdir_lib.resolve(workdir)
  check_workdir(path)
  lock = take_lock(path)
  try:
    return _train(config, path, lock)
  finally:
    if lock is not None:
      lock.release()


def _train(config, workdir, lock) -> dict:
  is_main = jax.process_index() == 0
  mesh = sharding.make_mesh()
  sharding.check_batch_size(config.batch_size)
  data = source.DataSource(config)  # fails fast on a missing dataset
  steps_per_epoch, total_steps = resolve_schedule(config, data.train_size)
  method = methods.get_method(config, data.num_classes, total_steps=total_steps)
  tx, schedule = optim.create_optimizer(
    config.optim,
    batch_size=config.batch_size,
    total_steps=total_steps,
    steps_per_epoch=steps_per_epoch,
    train_size=data.train_size,  # the official warm-up rounding (optim.create_optimizer)
  )
  state = step_lib.create_state(method, tx, config, mesh, data.image_shape)
  ckpt = checkpoint.Checkpointer(
    workdir / "checkpoints",
    keep=config.keep_checkpoints,
    save_every=config.checkpoint_every_steps,
  )
  try:
    # Metadata and fingerprint first, arrays last; raises rather than start over (checkpoint.py).
    restored = ckpt.restore_latest_good(
      checkpoint.abstract_like(state),
      check=lambda saved: fingerprint_lib.check_resume(saved, config, total_steps, data),
    )
  except BaseException:
    ckpt.close()
    raise
  skipped = 0
  if restored is not None:
    step0, state, meta = restored
    skipped = int(meta.get("skipped_steps", 0))
    if is_main:
      print(f"Resumed from {os.fspath(ckpt.path(step0))} at step {step0}.", flush=True)
  if is_main:  # after the resume check: a refused config must not overwrite the run's config.json
    metrics_lib.write_json(workdir / "config.json", json.loads(config.to_json()))
    if data.class_names is not None:  # folder datasets: the one class map (data/folder.py)
      metrics_lib.write_json(
        workdir / "class_map.json", {name: i for i, name in enumerate(data.class_names)}
      )
  meta = {
    "fingerprint": fingerprint_lib.fingerprint(config, data),
    "total_steps": total_steps,
    "config": json.loads(config.to_json()),
  }
  guard = nonfinite.Monitor(config.nan_policy, config.max_skipped_steps, skipped)
  start_step = int(state.step)

  writer = metrics_lib.MetricWriter(workdir)
  watcher = preemption.PreemptionWatcher(agree_every=min(10, config.log_every_steps))
  profiler = profiling.Profiler(config, workdir, start_step=start_step)  # config.profile_*
  results: dict[str, Any] = {}
  pending: list[tuple[int, dict]] = []
  step = start_step

  def check_pending():  # every step's non-finite flag, before anything is logged or saved
    host = [(s, jax.tree.map(float, sharding.to_host(x))) for s, x in pending]
    pending.clear()
    guard.check(host, ckpt.last_good)  # raises NonFiniteError under the policy
    meta["skipped_steps"] = guard.skipped
    return host

  try:
    if config.eval_at_start and start_step == 0:
      at_start = run_monitors(method, state, config, mesh, data, watcher)
      writer.write(0, at_start)
      results.update({f"{k}_random_init": v for k, v in at_start.items()})
      metrics_lib.update_results(workdir, results)

    grad_fn = None
    if config.get("grad_cache_chunk", 0) > 0:  # big batches in chunks (grad_cache.py)
      grad_fn = grad_cache.make_grad_fn(method, config.grad_cache_chunk)
    train_step = step_lib.make_train_step(method, tx, schedule, mesh, grad_fn=grad_fn)
    # Double buffering: the next global batch is read and copied while this step runs.
    batches = prefetch.to_device(data.train_batches(start_step=start_step), mesh)
    eval_every = (
      int(round(config.eval_every_epochs * steps_per_epoch)) if config.eval_every_epochs > 0 else 0
    )
    progress = metrics_lib.Progress(total_steps, start_step, config.batch_size)
    t_start = time.time()
    profiler.after_step(step, state)
    while step < total_steps:
      batch = next(batches)
      with profiler.annotate(step + 1):
        state, m = train_step(state, batch)
      step += 1
      profiler.after_step(step, state)
      pending.append((step, m))
      stop = watcher.should_stop(step)
      if lock is not None and lock.lost:
        raise joblock.WorkdirLockedError(
          f"Another job took over the workdir lock {os.fspath(lock.path)}; stopping so the two "
          f"jobs do not overwrite each other's checkpoints."
        )
      log_now = step % config.log_every_steps == 0 or step == total_steps
      if log_now or stop or ckpt.due(step):
        host = check_pending()
        if log_now:
          last = dict(host[-1][1])
          last["images_per_sec"] = progress.rate(step)
          last["skipped_steps"] = guard.skipped
          writer.write(step, last)
          progress.print(step, last, last["images_per_sec"])
      ckpt.save(step, state, meta, force=stop)
      if stop:
        return _preempted(ckpt, step, total_steps)
      if eval_every and step % eval_every == 0 and step < total_steps:
        writer.write(step, run_monitors(method, state, config, mesh, data, watcher))
    ckpt.save(step, state, meta, force=True)
    ckpt.wait()  # a failed final write raises here, not hidden in close()
    train_time = time.time() - t_start
    final = run_monitors(method, state, config, mesh, data, watcher)
    writer.write(step, final)
    results.update(final)
    results.update(
      {
        "steps": step,
        "train_time_s": train_time,
        "method": config.method,
        "skipped_steps": guard.skipped,
      }
    )
    return metrics_lib.update_results(workdir, results)
  except preemption.Interrupted:  # SIGTERM during an evaluation: save this step, exit
    check_pending()
    if step > 0:  # at start nothing was trained: nothing to save
      ckpt.save(step, state, meta, force=True)
    return _preempted(ckpt, step, total_steps, " during an evaluation")
  finally:
    profiler.stop()
    watcher.close()
    ckpt.close()
    writer.close()


def _preempted(ckpt, step: int, total_steps: int, during: str = "") -> dict:
  ckpt.wait()
  where = os.fspath(ckpt.path(step)) if step in ckpt.all_steps() else "none (nothing trained yet)"
  logging.warning(
    "Preempted%s: saved the checkpoint of step %d to %s; exiting. Run the same "
    "command again to resume from there.",
    during,
    step,
    where,
  )
  print(f"Preempted{during} at step {step}/{total_steps}; checkpoint saved to {where}.", flush=True)
  return {"preempted": True, "steps": step, "checkpoint": where}
