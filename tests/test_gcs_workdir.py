"""gs:// workdirs for real, against a local GCS emulator (tests/gcs_emulator.py, 127.0.0.1 only),
with only the standard variables set (STORAGE_EMULATOR_HOST, TENSORSTORE_GCS_HTTP_URL,
GOOGLE_AUTH_TOKEN_FOR_TESTING): checkpoints (orbax -> tensorstore), config.json, results.json,
metrics.jsonl, TensorBoard events and the job lock all live in the bucket.

Not covered here: epath's TensorFlow-gfile backend, which real gs:// uses when TensorFlow is
installed and no emulator is set (gfile cannot be pointed at an emulator); with the emulator the
same epath calls go through gcsfs.
"""

import json
import os

import numpy as np
import orbax.checkpoint as ocp
import pytest
from etils import epath

from contrastive_jax import checkpoint, joblock, train, workdir
from tests import fault_config, gcs_emulator
from tests.test_fault_tolerance import REPO, finish, launch, subprocess_env

URI = f"gs://{gcs_emulator.BUCKET}/run"


@pytest.fixture
def gcs(tmp_path, monkeypatch):
  """The emulator's URL, with this process's clients pointed at it."""
  with gcs_emulator.running(str(tmp_path / "gcs"), str(tmp_path / "gcs.log")) as url:
    for k, v in gcs_emulator.env(url).items():
      monkeypatch.setenv(k, v)
    monkeypatch.setenv("EPATH_USE_TF", "false")  # what workdir.resolve selects, undone afterwards
    _clear_backend_choice()
    yield url
  _clear_backend_choice()


def _clear_backend_choice():
  from etils.epath import gpath  # pylint: disable=g-import-not-at-top

  gpath._is_tf_installed.cache_clear()  # pylint: disable=protected-access


def _state(directory, step: int) -> dict:
  """The raw arrays of a checkpoint (no target: shapes from its metadata)."""
  mgr = ocp.CheckpointManager(directory, item_names=("state",))
  try:
    return mgr.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore()))["state"]
  finally:
    mgr.close()


def _tb_loss_steps(events_dir: epath.Path, tmp) -> list[int]:
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  steps = []
  for i, f in enumerate(sorted(events_dir.iterdir())):
    local = os.path.join(tmp, f"events{i}")
    with open(local, "wb") as fh:
      fh.write(f.read_bytes())
    for event in tf.compat.v1.train.summary_iterator(local):
      steps += [event.step for v in event.summary.value if v.tag == "loss"]
  return sorted(steps)


@pytest.mark.slow
def test_gs_workdir_sigkill_mid_save_then_resume_equals_a_local_run(gcs, tmp_path):
  """SIGKILL while the checkpoint of step 6 is half-written in the bucket; the restart discards it,
  resumes from step 4 and ends bit-identical to an uninterrupted run in a local directory."""
  cache = os.environ["JAX_COMPILATION_CACHE_DIR"]  # the session's shared cache (conftest.py)
  env = subprocess_env(JAX_COMPILATION_CACHE_DIR=cache, **gcs_emulator.env(gcs))
  rc, out = finish(launch(URI, dict(env, **{checkpoint.TEST_KILL_ENV: "6"})))
  assert rc == -9, out[-3000:]
  assert (epath.Path(URI) / "checkpoints" / "6").exists()  # written in place, never committed
  assert not (epath.Path(URI) / "checkpoints" / "6" / checkpoint.COMMIT_FILE).exists()

  rc, out = finish(launch(URI, env))
  assert rc == 0, out[-3000:]
  assert "Ignoring 1 incomplete checkpoint write(s)" in out, out[-3000:]
  assert f"Resumed from {URI}/checkpoints/4 at step 4." in out, out[-3000:]
  assert not os.path.exists(os.path.join(REPO, "gs:")), "a local 'gs:' directory was created"

  local = str(tmp_path / "local")
  rc, out = finish(launch(local, subprocess_env(JAX_COMPILATION_CACHE_DIR=cache)))
  assert rc == 0, out[-3000:]

  remote = epath.Path(URI)
  for name in ("config.json", "results.json", "metrics.jsonl", "checkpoints/8/checksums.json"):
    assert (remote / name).exists(), name
  assert not (remote / joblock.NAME).exists()  # released at the end
  got, want = _state(remote / "checkpoints", 8), _state(local + "/checkpoints", 8)
  flat_got, flat_want = (
    {"/".join(map(str, k)): v for k, v in ocp.tree.to_flat_dict(t).items()} for t in (got, want)
  )
  assert flat_got.keys() == flat_want.keys()
  for k in flat_want:
    np.testing.assert_array_equal(flat_got[k], flat_want[k], err_msg=k)  # bit for bit

  def losses(text):
    rows = [json.loads(line) for line in text.splitlines()]
    return {r["step"]: r["loss"] for r in rows if "loss" in r}

  remote_losses = losses((remote / "metrics.jsonl").read_text())
  with open(os.path.join(local, "metrics.jsonl"), encoding="utf-8") as f:
    local_losses = losses(f.read())
  assert remote_losses == local_losses and sorted(remote_losses) == list(range(1, 9))
  # Both sessions' TensorBoard events reached the bucket: steps 1-6 before the kill, 5-8 after.
  assert _tb_loss_steps(remote / "tensorboard", str(tmp_path)) == sorted(
    [*range(1, 7), *range(5, 9)]
  )


def test_gs_lock_refuses_a_live_job_and_takes_over_a_stale_one(gcs, caplog):
  path = workdir.resolve(URI + "/locked")
  path.mkdir(parents=True, exist_ok=True)
  first = joblock.Lock(path, heartbeat_s=0.2)
  first.acquire()
  try:
    with pytest.raises(
      joblock.WorkdirLockedError, match=r"Another job .* is running on workdir gs://"
    ):
      joblock.Lock(path).acquire()
  finally:
    first.release()
  assert not (path / joblock.NAME).exists()
  (path / joblock.NAME).write_text('{"host": "elsewhere", "pid": 1, "heartbeat": 0}')
  second = joblock.Lock(path, heartbeat_s=0.2, stale_s=1.0)
  second.acquire()  # a heartbeat from 1970: stale
  second.release()
  assert "Taking over the lock" in caplog.text and "elsewhere" in caplog.text


def test_unservable_or_misspelt_uri_fails_at_start(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  config = fault_config.get_config()
  with pytest.raises(ValueError, match=r"scheme ftp:// cannot be served"):
    train.train_and_evaluate(config, "ftp://host/run")
  with pytest.raises(ValueError, match=r"one slash missing .* 'gs://b/run'"):
    train.train_and_evaluate(config, "gs:/b/run")
  monkeypatch.setenv("STORAGE_EMULATOR_HOST", "http://127.0.0.1:1")
  monkeypatch.delenv("TENSORSTORE_GCS_HTTP_URL", raising=False)
  with pytest.raises(ValueError, match=r"TENSORSTORE_GCS_HTTP_URL"):
    train.train_and_evaluate(config, "gs://b/run")
  assert os.listdir(tmp_path) == []  # nothing local was created for any of them
