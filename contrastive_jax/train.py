"""The one generic pre-training loop: mesh, data, init or resume, step loop, log, checkpoint, eval.

A method plugs in through contrastive_jax.methods (see methods/base.py); nothing here knows
which method runs.
"""

import json
import logging
import math
import os
import time
from typing import Any

import jax

from contrastive_jax import (
  checkpoint,
  grad_cache,
  metrics as metrics_lib,
  methods,
  nonfinite,
  optim,
  preemption,
  sharding,
)
from contrastive_jax import step as step_lib
from contrastive_jax.data import source
from contrastive_jax.protocols import monitors


# ----------------------------------------------------------------------------- config checks


def resolve_schedule(config, train_size: int) -> tuple[int, int]:
  """(steps_per_epoch, total_steps); total_steps wins when > 0."""
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
  return steps_per_epoch, max(1, int(math.ceil(config.total_epochs * steps_per_epoch)))


def config_fingerprint(config) -> dict:
  """The fields a checkpoint cannot be resumed across (anything else may change, and is reported)."""
  return {
    "method": config.method,
    "model": config.model.to_dict(),
    "head": config.head.to_dict(),
    "batch_size": config.batch_size,
    "dataset": config.dataset,
    "seed": config.seed,
    "image_size": config.image_size,
    "method_args": config.method_args.to_dict(),
  }


def check_resume(saved: dict, config, total_steps: int) -> None:
  """Fails when the checkpoint was made by a different run; allows more steps and logging changes."""
  now = json.loads(json.dumps(config_fingerprint(config)))
  old = saved.get("fingerprint", {})
  diffs = [
    f"{k}: checkpoint has {old.get(k)!r}, config has {now[k]!r}"
    for k in now
    if k in old and old[k] != now[k]
  ]
  if diffs:
    raise ValueError(
      "The checkpoint in this workdir was written by a different configuration:\n  "
      + "\n  ".join(diffs)
      + "\nUse a new --workdir for the new configuration, or restore the old values."
    )
  if saved.get("total_steps") not in (None, total_steps):
    logging.warning(
      "Resuming with total_steps %s (checkpoint was made with %s): the LR schedule "
      "is stretched from here on.",
      total_steps,
      saved.get("total_steps"),
    )
  changed = _changed_fields(saved.get("config", {}), json.loads(config.to_json()))
  if changed:
    logging.warning(
      "Resuming with changed settings (safe to change; the run continues): %s.",
      "; ".join(f"{k}: {a!r} -> {b!r}" for k, a, b in changed),
    )


def _changed_fields(old: dict, new: dict, prefix: str = "") -> list[tuple[str, Any, Any]]:
  out = []
  for k in sorted(set(old) | set(new)):
    a, b = old.get(k), new.get(k)
    if isinstance(a, dict) and isinstance(b, dict):
      out += _changed_fields(a, b, f"{prefix}{k}.")
    elif a != b:
      out.append((f"{prefix}{k}", a, b))
  return out


# ----------------------------------------------------------------------------- evaluation


def run_monitors(method, state, config, mesh, data) -> dict:
  """Every evaluator the method declares (method.evaluators), by name from protocols/monitors.py."""
  out = {}
  for name in method.evaluators:
    out.update(getattr(monitors, name)(method, state, config, mesh, data))
  return out


# ----------------------------------------------------------------------------- the loop


def check_workdir(workdir: str) -> None:
  """Fails before any training when this process cannot write to workdir (checkpoints, logs)."""
  probe = os.path.join(workdir, f".write_test_{jax.process_index()}")
  try:
    os.makedirs(workdir, exist_ok=True)
    with open(probe, "w", encoding="utf-8") as f:
      f.write("ok")
    os.remove(probe)
  except OSError as e:
    raise PermissionError(
      f"--workdir={workdir!r} cannot be written ({type(e).__name__}: {e}). Checkpoints and logs go "
      f"there: pass a --workdir this user can write to."
    ) from None


def train_and_evaluate(config, workdir: str) -> dict:
  """Pre-trains config.method; resumes from workdir; returns the final results dict.

  Fault tolerance (docs/fault_tolerance.md): on SIGTERM or a preemption notice every process saves
  the same step and this returns {'preempted': True, ...}; a non-finite step is never saved (see
  contrastive_jax/nonfinite.py); unreadable or half-written checkpoints are skipped on restart.
  """

  workdir = os.path.abspath(workdir)
  check_workdir(workdir)
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
  )
  state = step_lib.create_state(method, tx, config, mesh, data.image_shape)
  ckpt = checkpoint.Checkpointer(
    os.path.join(workdir, "checkpoints"),
    keep=config.keep_checkpoints,
    save_every=config.checkpoint_every_steps,
  )
  restored = ckpt.restore_latest_good(checkpoint.abstract_like(state))
  skipped = 0
  if restored is not None:
    step0, state, meta = restored
    check_resume(meta, config, total_steps)
    skipped = int(meta.get("skipped_steps", 0))
    if is_main:
      print(f"Resumed from {ckpt.directory}/{step0} at step {step0}.", flush=True)
  if is_main:  # after the resume check: a refused config must not overwrite the run's config.json
    metrics_lib.write_json(os.path.join(workdir, "config.json"), json.loads(config.to_json()))
  meta = {
    "fingerprint": config_fingerprint(config),
    "total_steps": total_steps,
    "config": json.loads(config.to_json()),
  }
  guard = nonfinite.Monitor(config.nan_policy, config.max_skipped_steps, skipped)
  start_step = int(state.step)

  writer = metrics_lib.MetricWriter(workdir)
  results: dict[str, Any] = {}
  if config.eval_at_start and start_step == 0:
    at_start = run_monitors(method, state, config, mesh, data)
    writer.write(0, at_start)
    results.update({f"{k}_random_init": v for k, v in at_start.items()})
    metrics_lib.update_results(workdir, results)

  grad_fn = None
  if config.get("grad_cache_chunk", 0) > 0:  # big batches in chunks (contrastive_jax/grad_cache.py)
    grad_fn = grad_cache.make_grad_fn(method, config.grad_cache_chunk)
  train_step = step_lib.make_train_step(method, tx, schedule, mesh, grad_fn=grad_fn)
  batches = data.train_batches(start_step=start_step)
  eval_every = (
    int(round(config.eval_every_epochs * steps_per_epoch)) if config.eval_every_epochs > 0 else 0
  )
  progress = metrics_lib.Progress(total_steps, start_step, config.batch_size)
  watcher = preemption.PreemptionWatcher(agree_every=min(10, config.log_every_steps))
  pending: list[tuple[int, dict]] = []
  step = start_step
  t_start = time.time()
  try:
    while step < total_steps:
      batch = sharding.global_batch(next(batches), mesh)
      state, m = train_step(state, batch)
      step += 1
      pending.append((step, m))
      stop = watcher.should_stop(step)
      log_now = step % config.log_every_steps == 0 or step == total_steps
      if log_now or stop or ckpt.due(step):
        # Every step's non-finite flag is checked before anything is logged or saved.
        host = [(s, jax.tree.map(float, sharding.to_host(x))) for s, x in pending]
        pending.clear()
        guard.check(host, ckpt.last_good)  # raises NonFiniteError under the policy
        meta["skipped_steps"] = guard.skipped
        if log_now:
          last = dict(host[-1][1])
          last["images_per_sec"] = progress.rate(step)
          last["skipped_steps"] = guard.skipped
          writer.write(step, last)
          progress.print(step, last, last["images_per_sec"])
      ckpt.save(step, state, meta, force=stop)
      if stop:
        ckpt.wait()
        where = os.path.join(ckpt.directory, str(step))
        logging.warning(
          "Preempted: saved the checkpoint of step %d to %s; exiting. Run the same "
          "command again to resume from there.",
          step,
          where,
        )
        print(f"Preempted at step {step}/{total_steps}; checkpoint saved to {where}.", flush=True)
        return {"preempted": True, "steps": step, "checkpoint": where}
      if eval_every and step % eval_every == 0 and step < total_steps:
        writer.write(step, run_monitors(method, state, config, mesh, data))
    ckpt.save(step, state, meta, force=True)
    train_time = time.time() - t_start
    final = run_monitors(method, state, config, mesh, data)
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
    results = metrics_lib.update_results(workdir, results)
    return results
  finally:
    watcher.close()
    ckpt.close()
    writer.close()
