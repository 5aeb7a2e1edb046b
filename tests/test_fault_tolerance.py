"""Fault tolerance: preemption, crash-safe checkpoints, exact resume, config mismatch, NaN guard, bad input.

The quick tests run in-process on tiny pytrees and the tiny config's nano ResNet. The slow one
drives real `python -m contrastive_jax.main` processes through SIGTERM and a SIGKILL in the middle of a
checkpoint write, and compares the final parameters with an uninterrupted run of the same step
function over the same data stream.
"""

import glob
import json
import logging
import os
import re
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from contrastive_jax import step as step_lib
from contrastive_jax import checkpoint, methods, nonfinite, optim, preemption, sharding, train
from tests import fault_config, helpers

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ----------------------------------------------------------------------------- helpers


def reference_run(config, process_count: int = 1):
  """The uninterrupted run: step_lib.make_train_step over the stream(s) the loop would read.

  With process_count > 1 the global batch is the concatenation of every process's host batch, in
  process order, exactly as make_array_from_process_local_data assembles it across processes.

  Returns:
    (final TrainState, [loss per step]).
  """
  from contrastive_jax.data import pipeline, source  # pylint: disable=g-import-not-at-top

  mesh = sharding.make_mesh()
  data = source.DataSource(config)
  steps_per_epoch, total_steps = train.resolve_schedule(config, data.train_size)
  method = methods.get_method(config, data.num_classes, total_steps=total_steps)
  tx, schedule = optim.create_optimizer(
    config.optim,
    batch_size=config.batch_size,
    total_steps=total_steps,
    steps_per_epoch=steps_per_epoch,
  )
  state = step_lib.create_state(method, tx, config, mesh, data.image_shape)
  step_fn = step_lib.make_train_step(method, tx, schedule, mesh)
  streams = [
    pipeline.pretrain_iterator(
      config,
      batch_size=config.batch_size // process_count,
      process_index=i,
      process_count=process_count,
      seed=config.seed,
    )
    for i in range(process_count)
  ]
  losses = []
  for _ in range(total_steps):
    parts = [next(s) for s in streams]
    batch = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    state, m = step_fn(state, sharding.global_batch(batch, mesh))
    losses.append(float(m["loss"]))
  return state, losses


def restore_params(workdir: str, like_state):
  ckpt = checkpoint.Checkpointer(os.path.join(workdir, "checkpoints"))
  try:
    step = ckpt.latest_step()
    return step, ckpt.restore(step, checkpoint.abstract_like(like_state))
  finally:
    ckpt.close()


def logged_losses(workdir: str) -> dict[int, float]:
  with open(os.path.join(workdir, "metrics.jsonl"), encoding="utf-8") as f:
    rows = [json.loads(line) for line in f]
  return {r["step"]: r["loss"] for r in rows if "loss" in r}


def assert_trees_close(a, b, rtol=1e-6, atol=1e-7):
  assert jax.tree.structure(a) == jax.tree.structure(b)
  for (path, x), y in zip(jax.tree.flatten_with_path(a)[0], jax.tree.leaves(b)):
    np.testing.assert_allclose(
      np.asarray(x), np.asarray(y), rtol=rtol, atol=atol, err_msg=jax.tree_util.keystr(path)
    )


def subprocess_env(num_devices: int = 8, **extra) -> dict:
  env = dict(os.environ)
  # The session's XLA flags (conftest.py) with this process's device count, so a subprocess compiles
  # exactly like the in-process reference it is compared with.
  flags = re.sub(r"--xla_force_host_platform_device_count=\d+", "", env.get("XLA_FLAGS", ""))
  env.update(
    XLA_FLAGS=f"{flags.strip()} --xla_force_host_platform_device_count={num_devices}".strip(),
    JAX_PLATFORMS="cpu",
    TF_CPP_MIN_LOG_LEVEL="2",
    CUDA_VISIBLE_DEVICES="",
    PYTHONPATH=REPO,
  )
  for k in (preemption.TEST_SIGTERM_ENV, checkpoint.TEST_KILL_ENV):
    env.pop(k, None)
  env.update({k: str(v) for k, v in extra.items()})
  return env


def launch(workdir: str, env: dict, *overrides: str, method: str = "simclr") -> subprocess.Popen:
  cmd = [
    sys.executable,
    "-m",
    "contrastive_jax.main",
    f"--config=tests/fault_config.py:{method}",
    f"--workdir={workdir}",
    *overrides,
  ]
  return subprocess.Popen(
    cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
  )


def finish(proc: subprocess.Popen, timeout: float = 400) -> tuple[int, str]:
  out, _ = proc.communicate(timeout=timeout)
  return proc.returncode, out


# ----------------------------------------------------------------------------- checkpoints


def _tiny_state(value: float):
  return {"w": jnp.full((4, 3), value, jnp.float32), "step": jnp.asarray(int(value), jnp.int32)}


def _save_steps(directory, steps):
  ckpt = checkpoint.Checkpointer(directory, keep=5, save_every=1)
  for s in steps:
    ckpt.save(s, _tiny_state(s), {"step": s})
  ckpt.close()


def test_truncated_latest_checkpoint_is_skipped_and_set_aside(tmp_path, caplog):
  directory = str(tmp_path / "ckpt")
  _save_steps(directory, [1, 2])
  data_files = [
    f
    for f in glob.glob(os.path.join(directory, "2", "state", "**", "*"), recursive=True)
    if os.path.isfile(f) and os.path.getsize(f) > 0 and "/d/" in f
  ]
  assert data_files, os.listdir(os.path.join(directory, "2", "state"))
  for f in data_files:  # cut every array data file of the newest checkpoint in half
    with open(f, "r+b") as fh:
      fh.truncate(os.path.getsize(f) // 2)
  ckpt = checkpoint.Checkpointer(directory, keep=5, save_every=1)
  with caplog.at_level(logging.WARNING):
    step, state, meta = ckpt.restore_latest_good(checkpoint.abstract_like(_tiny_state(0)))
  assert step == 1 and meta == {"step": 1}
  np.testing.assert_array_equal(state["w"], np.ones((4, 3)))
  assert "Checkpoint at step 2 could not be restored" in caplog.text
  assert ckpt.all_steps() == [1]  # set aside, so step 2 can be written again
  assert os.listdir(directory + checkpoint.CORRUPT_SUFFIX)
  assert ckpt.save(2, _tiny_state(7), {"step": 2})
  ckpt.close()


def test_replicated_state_saves_without_compiling_and_round_trips(tmp_path, caplog):
  """One process, 8 devices: a replicated array is written whole, with no per-device slice program.

  orbax's CPU/TPU default cuts each replicated array with a dimension divisible by the 8 replicas
  into 8 parts, one eager slice compiled per (shape, device): 160 compiles for the micro ResNet's
  state at its first save (checkpoint.py).
  """
  mesh = sharding.make_mesh()
  assert mesh.devices.size == 8
  replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
  # Divisible by 8 (so orbax's default would slice them), shapes nothing else in the suite uses
  # (so no slice program could come from jax's cache).
  shapes = [(8, 11), (3, 24), (40, 7)]
  state = {
    f"w{i}": jax.device_put(np.random.default_rng(i).normal(size=s).astype(np.float32), replicated)
    for i, s in enumerate(shapes)
  }
  ckpt = checkpoint.Checkpointer(str(tmp_path / "ckpt"), keep=2, save_every=1)
  with caplog.at_level(logging.WARNING), jax.log_compiles():
    assert ckpt.save(1, state, {"step": 1})
    ckpt.wait()
  compiles = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Compiling")]
  assert not compiles, compiles
  restored = ckpt.restore(1, checkpoint.abstract_like(state))
  ckpt.close()
  for k, v in state.items():
    assert restored[k].sharding.is_equivalent_to(replicated, v.ndim)
    np.testing.assert_array_equal(np.asarray(restored[k]), np.asarray(v))


def test_corrupt_meta_and_interrupted_write_are_ignored(tmp_path, caplog):
  directory = str(tmp_path / "ckpt")
  _save_steps(directory, [1, 2])
  meta_files = glob.glob(os.path.join(directory, "2", "meta", "*"))
  for f in meta_files:
    with open(f, "w", encoding="utf-8") as fh:
      fh.write("{not json")
  partial = os.path.join(directory, f"3{checkpoint.TMP_SUFFIX}-123")  # what a SIGKILL leaves
  os.makedirs(os.path.join(partial, "state"))
  with caplog.at_level(logging.WARNING):
    ckpt = checkpoint.Checkpointer(directory, keep=5, save_every=1)
    step, _, _ = ckpt.restore_latest_good(checkpoint.abstract_like(_tiny_state(0)))
  assert step == 1
  assert "incomplete checkpoint write" in caplog.text and not os.path.exists(partial)
  ckpt.close()


# ----------------------------------------------------------------------------- config changes


def test_resume_into_changed_config_fails_naming_the_fields():
  old = fault_config.get_config()
  saved = {
    "fingerprint": json.loads(json.dumps(train.config_fingerprint(old))),
    "total_steps": 8,
    "config": json.loads(old.to_json()),
  }
  for field, value, name in (
    ("model.width", 2.0, "model"),
    ("method", "byol", "method"),
    ("batch_size", 64, "batch_size"),
  ):
    new = fault_config.get_config()
    helpers_set(new, field, value)
    with pytest.raises(ValueError, match=rf"(?s)different configuration.*{name}: checkpoint has"):
      train.check_resume(saved, new, 8)


def test_resume_with_safe_changes_continues_and_says_so(caplog):
  old = fault_config.get_config()
  saved = {
    "fingerprint": json.loads(json.dumps(train.config_fingerprint(old))),
    "total_steps": 8,
    "config": json.loads(old.to_json()),
  }
  new = fault_config.get_config()
  new.log_every_steps = 5
  new.total_steps = 16
  new.optim.base_lr = 5e-4  # allowed, but not called safe: the run no longer equals either config
  with caplog.at_level(logging.WARNING):
    train.check_resume(saved, new, 16)
  assert "total_steps 16 (checkpoint was made with 8)" in caplog.text
  assert "(safe to change; the run continues): log_every_steps: 1 -> 5; total_steps" in caplog.text
  assert "Resuming with changed training settings: optim.base_lr: 0.001 -> 0.0005" in caplog.text


def helpers_set(config, dotted, value):
  *path, last = dotted.split(".")
  for p in path:
    config = config[p]
  config[last] = value


# ----------------------------------------------------------------------------- NaN guard


def test_guarded_step_keeps_state_on_nonfinite_batch():
  # resnet_micro, not the tiny config's resnet_nano: with the one-block nano an inf pixel made
  # the gradient non-finite (the guard fired) but left the logged loss finite; this test pins both.
  config = helpers.tiny_config(**{"model.name": "resnet_micro"})
  mesh = sharding.make_mesh()
  method = methods.get_method(config, 10)
  tx, schedule = optim.create_optimizer(
    config.optim, batch_size=config.batch_size, total_steps=10, steps_per_epoch=10
  )
  state = step_lib.create_state(method, tx, config, mesh, (16, 16, 3))
  before = jax.tree.map(np.asarray, state)
  step = step_lib.make_train_step(method, tx, schedule, mesh)
  bad = helpers.random_batch(config.batch_size)
  bad["view1"][3] = np.inf
  state, m = step(state, sharding.global_batch(bad, mesh))
  assert float(m[nonfinite.NONFINITE]) == 1.0 and not np.isfinite(float(m["loss"]))
  assert int(state.step) == 1
  assert_trees_close(state.replace(step=before.step), before, rtol=0, atol=0)
  state, m = step(state, sharding.global_batch(helpers.random_batch(config.batch_size), mesh))
  assert float(m[nonfinite.NONFINITE]) == 0.0 and int(state.step) == 2
  assert all(np.isfinite(x).all() for x in jax.tree.leaves(jax.tree.map(np.asarray, state.params)))


def test_monitor_skip_policy_counts_then_stops():
  mon = nonfinite.Monitor("skip", max_skipped=2, skipped=1)  # one skip restored from a checkpoint
  ok = {"loss": 1.0, nonfinite.NONFINITE: 0.0}
  bad = {"loss": float("nan"), nonfinite.NONFINITE: 1.0}
  mon.check([(1, ok), (2, bad)], lambda: "W/checkpoints/0")
  assert mon.skipped == 2
  with pytest.raises(
    nonfinite.NonFiniteError,
    match=r"(?s)step 3 .*max_skipped_steps=2.*"
    r"Last finite metrics: step 1: loss=1.*W/checkpoints/0",
  ):
    mon.check([(3, bad)], lambda: "W/checkpoints/0")
  with pytest.raises(ValueError, match="nan_policy"):
    nonfinite.Monitor("ignore", 1)


def test_nan_stops_run_and_leaves_last_good_checkpoint(tmp_path, monkeypatch):
  from contrastive_jax.data import source  # pylint: disable=g-import-not-at-top

  original = source.DataSource.train_batches

  def planted(self, start_step=0):  # inf pixels in the batch of step 3 (stream index 2)
    for i, b in enumerate(original(self, start_step=start_step), start=start_step):
      if i == 2:
        b = dict(b, view1=np.full_like(b["view1"], np.inf))
      yield b

  monkeypatch.setattr(source.DataSource, "train_batches", planted)
  config = fault_config.get_config()
  config.log_every_steps = 4  # the check still runs before the save at step 4
  workdir = str(tmp_path / "w")
  with pytest.raises(nonfinite.NonFiniteError) as err:
    train.train_and_evaluate(config, workdir)
  msg = str(err.value)
  assert "at step 3" in msg and "Last finite metrics: step 2: " in msg
  assert os.path.join(workdir, "checkpoints", "2") in msg
  ckpt = checkpoint.Checkpointer(os.path.join(workdir, "checkpoints"))
  assert ckpt.all_steps() == [2]  # step 4 (after the NaN) was never saved
  ckpt.close()


# ----------------------------------------------------------------------------- bad input


def test_unwritable_workdir_fails_before_training(tmp_path):
  blocker = tmp_path / "a_file"
  blocker.write_text("x")
  with pytest.raises(PermissionError, match=r"--workdir=.*cannot be written"):
    train.train_and_evaluate(fault_config.get_config(), str(blocker / "run"))


def test_missing_dataset_fails_clearly_and_leaves_nothing(tmp_path):
  config = fault_config.get_config()
  config.dataset = "no_such_dataset_xyz"
  workdir = tmp_path / "w"
  with pytest.raises(ValueError, match=r"Unknown dataset 'no_such_dataset_xyz' \(config.dataset\)"):
    train.train_and_evaluate(config, str(workdir))
  assert not (workdir / "checkpoints").exists() and not (workdir / "config.json").exists()


# ----------------------------------------------------------------------------- real processes


@pytest.mark.slow
def test_sigterm_then_sigkill_mid_save_resume_exactly(tmp_path):
  """SIGTERM after step 3 -> saves 3, exits 0; resume; SIGKILL while writing step 6 -> resume from 4;
  the final parameters, optimiser state, method state and logged losses equal the uninterrupted
  run's.

  BYOL: its method state (the EMA target network, with a step-dependent momentum) must survive too.
  """
  method = "byol"
  workdir = str(tmp_path / "w")
  cache = os.environ["JAX_COMPILATION_CACHE_DIR"]  # the session's shared cache (conftest.py)
  rc, out = finish(
    launch(
      workdir,
      subprocess_env(JAX_COMPILATION_CACHE_DIR=cache, **{preemption.TEST_SIGTERM_ENV: 3}),
      method=method,
    )
  )
  assert rc == 0, out[-3000:]
  assert "Preempted at step 3/8; checkpoint saved to" in out, out[-3000:]
  assert os.path.isdir(os.path.join(workdir, "checkpoints", "3"))

  rc, out = finish(
    launch(
      workdir,
      subprocess_env(JAX_COMPILATION_CACHE_DIR=cache, **{checkpoint.TEST_KILL_ENV: 6}),
      method=method,
    )
  )
  assert rc == -9, out[-3000:]
  assert re.search(r"Resumed from \S+/checkpoints/3 at step 3\.", out), out[-3000:]
  assert glob.glob(os.path.join(workdir, "checkpoints", f"6{checkpoint.TMP_SUFFIX}*")), os.listdir(
    os.path.join(workdir, "checkpoints")
  )

  rc, out = finish(
    launch(
      workdir,
      subprocess_env(JAX_COMPILATION_CACHE_DIR=cache),
      "--config.log_every_steps=2",
      method=method,
    )
  )
  assert rc == 0, out[-3000:]
  assert "incomplete checkpoint write" in out, out[-3000:]
  assert re.search(r"Resumed from \S+/checkpoints/4 at step 4\.", out), out[-3000:]
  assert "log_every_steps: 1 -> 2" in out

  ref_state, ref_losses = reference_run(fault_config.get_config(method))
  step, state = restore_params(workdir, ref_state)
  assert step == 8
  assert jax.tree.leaves(ref_state.extras)
  assert_trees_close(state.extras, ref_state.extras, rtol=1e-5, atol=1e-6)
  assert_trees_close(state.params, ref_state.params, rtol=1e-5, atol=1e-6)
  assert_trees_close(state.opt_state, ref_state.opt_state, rtol=1e-5, atol=1e-6)
  assert_trees_close(state.batch_stats, ref_state.batch_stats, rtol=1e-5, atol=1e-6)
  np.testing.assert_array_equal(state.rng, ref_state.rng)
  logged = logged_losses(workdir)  # over three processes; the third logs every 2nd step
  assert sorted(logged) == [1, 2, 3, 4, 5, 6, 8], sorted(logged)
  np.testing.assert_allclose(
    [logged[s] for s in sorted(logged)], [ref_losses[s - 1] for s in sorted(logged)], rtol=1e-5
  )


def _image_folder(root, per_class=12, bad=()):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  rng = np.random.default_rng(0)
  for c, cls in enumerate(("cat", "dog")):
    os.makedirs(root / cls)
    for i in range(per_class):
      img = rng.integers(0, 255, size=(20 + c, 24, 3 if i % 2 else 1), dtype=np.uint8)
      (root / cls / f"{i}.png").write_bytes(tf.io.encode_png(img).numpy())
  for name in bad:
    (root / name).write_bytes(b"\x89PNG\r\n\x1a\n not really a png")


def test_folder_dataset_skips_bad_images_and_counts_them(tmp_path, caplog):
  from contrastive_jax.data import pipeline, source  # pylint: disable=g-import-not-at-top

  _image_folder(tmp_path / "imgs", bad=("cat/broken.jpg", "dog/empty.png"))
  config = fault_config.get_config()
  config.dataset = f"folder:{tmp_path / 'imgs'}"
  config.batch_size = 8
  with caplog.at_level(logging.WARNING):
    data = source.DataSource(config)
  assert data.num_classes == 2 and data.train_size == 24
  assert "skipped 2 of 26 files" in caplog.text and "broken.jpg" in caplog.text
  batch = next(data.train_batches())
  assert batch["view1"].shape == (8, 16, 16, 3) and set(batch["label"]) <= {0, 1}
  ev = list(pipeline.eval_iterator(config, "test", batch_size=16, process_index=0, process_count=1))
  assert sum(int(b["mask"].sum()) for b in ev) == 24


def test_folder_dataset_with_no_decodable_image_fails_clearly(tmp_path):
  from contrastive_jax.data import source  # pylint: disable=g-import-not-at-top

  _image_folder(tmp_path / "imgs", per_class=0, bad=("cat/a.jpg", "dog/b.jpg"))
  config = fault_config.get_config()
  config.dataset = f"folder:{tmp_path / 'imgs'}"
  with pytest.raises(ValueError, match=r"none of the 2 files .* could be decoded as an image"):
    source.DataSource(config)
  config.dataset = f"folder:{tmp_path / 'missing'}"
  with pytest.raises(ValueError, match=r"is not a directory"):
    source.DataSource(config)


def test_preemption_watcher_catches_sigterm_and_restores_handlers():
  import signal  # pylint: disable=g-import-not-at-top

  before = signal.getsignal(signal.SIGTERM)
  watcher = preemption.PreemptionWatcher()
  try:
    assert not watcher.should_stop(1)
    os.kill(os.getpid(), signal.SIGTERM)
    assert watcher.should_stop(2)
    os.kill(os.getpid(), signal.SIGINT)  # a second signal: Ctrl-C means stop now
    pytest.fail("expected KeyboardInterrupt")
  except KeyboardInterrupt:
    pass
  finally:
    watcher.close()
  assert signal.getsignal(signal.SIGTERM) is before
