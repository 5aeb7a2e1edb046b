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
import jax.numpy as jnp
import optax
from jax.sharding import PartitionSpec as P

from contrastive_jax import (
  checkpoint,
  metrics as metrics_lib,
  methods,
  nonfinite,
  optim,
  preemption,
  sharding,
)
from contrastive_jax.state import TrainState


# ----------------------------------------------------------------------------- the step


def make_train_step(method, tx, schedule, mesh, grad_fn=None):
  """jit(shard_map(step)) : (state, global batch) -> (state, metrics); state donated.

  `grad_fn(state, batch, rng) -> (aux, grads)` computes the gradient inside the per-device body; the
  default differentiates method.loss_fn in one pass (the gradient-cache step passes its own).
  """
  if grad_fn is None:

    def grad_fn(state, batch, rng):
      def loss_fn(params):
        return method.loss_fn(params, state, batch, rng, state.step)

      (_, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
      return aux, grads

  def step_body(state: TrainState, batch):
    rng = jax.random.fold_in(state.rng, state.step)
    rng = jax.random.fold_in(rng, jax.lax.axis_index(sharding.DATA_AXIS))
    aux, grads = grad_fn(state, batch, rng)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    extras = method.post_update(state.extras, params, aux.get("extras_update"), state.step)
    m = dict(aux["metrics"])
    m["learning_rate"] = schedule(state.step)
    m["grad_norm"] = optax.global_norm(grads)
    new_state = state.replace(
      step=state.step + 1,
      params=params,
      batch_stats=aux["batch_stats"],
      opt_state=opt_state,
      extras=extras,
    )
    return new_state, m

  body = jax.shard_map(
    nonfinite.guard(step_body),
    mesh=mesh,
    in_specs=(P(), P(sharding.DATA_AXIS)),
    out_specs=(P(), P()),
  )
  return jax.jit(body, donate_argnums=0)


def create_state(method, tx, config, mesh, image_shape) -> TrainState:
  """Shapes first (eval_shape), then the real, replicated state (jit with out_shardings)."""

  def init_fn(rng):
    init_rng, state_rng = jax.random.split(rng)
    dummy = jnp.zeros((2, *image_shape), jnp.float32)
    v = method.init(init_rng, dummy)
    return TrainState(
      step=jnp.zeros((), jnp.int32),
      params=v["params"],
      batch_stats=v["batch_stats"],
      opt_state=tx.init(v["params"]),
      extras=v["extras"],
      rng=state_rng,
    )

  rng = jax.random.PRNGKey(config.seed)  # raw uint32 key: checkpoints as a plain array
  abstract = jax.eval_shape(init_fn, rng)
  shardings = jax.tree.map(lambda _: sharding.replicated(mesh), abstract)
  return jax.jit(init_fn, out_shardings=shardings)(rng)


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


def knn_eval(method, state, config, mesh, data, num_classes) -> dict:
  """kNN top-1 (k=config.knn.k): config.knn.test_split (default eval_split) against a memory bank
  of config.knn.bank_split (default train_split); TFDS slices such as 'train[:10000]' work."""
  from contrastive_jax.evaluators import features as feats_lib, knn  # pylint: disable=g-import-not-at-top

  bank_split = config.knn.get("bank_split") or config.train_split
  test_split = config.knn.get("test_split") or config.eval_split
  embed_step = feats_lib.make_embed_step(method, mesh)
  t0 = time.time()
  bank = feats_lib.compute_features(embed_step, state, data.eval_batches(bank_split), mesh)
  test = feats_lib.compute_features(embed_step, state, data.eval_batches(test_split), mesh)
  res = knn.knn_classify(
    bank[0],
    bank[1],
    test[0],
    test[1],
    num_classes=num_classes,
    ks=(int(config.knn.k),),
    temperature=float(config.knn.temperature),
    mesh=mesh,
  )
  if jax.process_index() == 0:
    print(
      f"kNN (k={int(config.knn.k)}) top-1 {res['knn_top1']:.4f}: {len(test[0])} {test_split} "
      f"images vs a bank of {len(bank[0])} {bank_split} images ({time.time() - t0:.0f}s)",
      flush=True,
    )
  return {"knn_top1": float(res["knn_top1"])}


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
  from contrastive_jax.data import source  # pylint: disable=g-import-not-at-top

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
  state = create_state(method, tx, config, mesh, data.image_shape)
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
    results["knn_top1_random_init"] = knn_eval(method, state, config, mesh, data, data.num_classes)[
      "knn_top1"
    ]
    writer.write(0, {"knn_top1": results["knn_top1_random_init"]})
    metrics_lib.update_results(workdir, results)

  if config.get("grad_cache_chunk", 0) > 0:  # big batches in chunks (contrastive_jax/grad_cache.py)
    from contrastive_jax import grad_cache  # pylint: disable=g-import-not-at-top

    train_step = grad_cache.make_train_step(method, tx, schedule, mesh, config.grad_cache_chunk)
  else:
    train_step = make_train_step(method, tx, schedule, mesh)
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
        writer.write(step, knn_eval(method, state, config, mesh, data, data.num_classes))
    ckpt.save(step, state, meta, force=True)
    train_time = time.time() - t_start
    final = knn_eval(method, state, config, mesh, data, data.num_classes)
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
