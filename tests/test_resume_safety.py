"""Resume safety through the real paths: a changed config is refused before any array is read and
touches nothing; a flipped byte falls back to the previous checkpoint; when nothing restores the run
stops instead of starting over; a full disk fails the save in one line and the next start resumes.
"""

import glob
import hashlib
import json
import logging
import os
import re
import subprocess
import time

import pytest

from contrastive_jax import checkpoint, fingerprint, train
from tests import fault_config
from tests.test_fault_tolerance import finish, launch, subprocess_env


def snapshot(root: str) -> dict[str, tuple[int, str]]:
  """{relative path: (size, sha256)} of every file under root."""
  out = {}
  for f in sorted(glob.glob(os.path.join(root, "**", "*"), recursive=True)):
    if os.path.isfile(f):
      with open(f, "rb") as fh:
        out[os.path.relpath(f, root)] = (os.path.getsize(f), hashlib.sha256(fh.read()).hexdigest())
  return out


def flip_byte(step_dir: str) -> str:
  """Flips one bit in the middle of the largest array data file of a checkpoint; returns it."""
  files = [
    f
    for f in glob.glob(os.path.join(step_dir, "state", "**", "d", "*"), recursive=True)
    if os.path.isfile(f)
  ]
  target = max(files, key=os.path.getsize)
  with open(target, "r+b") as fh:
    fh.seek(os.path.getsize(target) // 2)
    b = fh.read(1)
    fh.seek(-1, os.SEEK_CUR)
    fh.write(bytes([b[0] ^ 0x10]))
  return target


# ----------------------------------------------------------------------------- config changes


@pytest.mark.slow
def test_changed_config_resume_is_refused_through_the_cli_and_touches_nothing(tmp_path):
  """A shape change (head.out_dim), a data change (number of training examples) and an
  augmentation change on resume: exit non-zero naming all three, every file left as it was; then a
  safe change (log interval, kNN k, total_steps) continues from the checkpoint."""
  workdir = str(tmp_path / "w")
  env = subprocess_env()
  rc, out = finish(launch(workdir, env, "--config.total_steps=2"))
  assert rc == 0, out[-3000:]
  before = snapshot(workdir)
  assert "checkpoints/2/checksums.json" in before

  t0 = time.time()
  rc, out = finish(
    launch(
      workdir,
      env,
      "--config.total_steps=4",
      "--config.head.out_dim=32",
      "--config.synthetic_train_size=320",
      "--config.aug.crop_area_min=0.5",
    )
  )
  refused_s = time.time() - t0
  assert rc != 0, out[-3000:]
  assert "written by a different configuration" in out, out[-3000:]
  assert "head: checkpoint has" in out and "'out_dim': 16" in out, out[-3000:]
  assert "data.train_examples: checkpoint has 256, config has 320" in out, out[-3000:]
  assert "data.aug.crop_area_min: checkpoint has 0.08, config has 0.5" in out, out[-3000:]
  assert "Nothing on disk was changed" in out
  assert snapshot(workdir) == before  # config.json, checkpoints, metrics: byte for byte
  assert not os.path.exists(workdir + "/checkpoints" + checkpoint.CORRUPT_SUFFIX)
  assert not os.path.exists(os.path.join(workdir, "lock.json"))  # released on the error
  print(f"refused after {refused_s:.0f}s (process start included)")

  rc, out = finish(
    launch(
      workdir, env, "--config.total_steps=4", "--config.log_every_steps=2", "--config.knn.k=10"
    )
  )
  assert rc == 0, out[-3000:]
  assert re.search(r"Resumed from \S+/checkpoints/2 at step 2\.", out), out[-3000:]
  assert "safe to change; the run continues" in out and "knn.k: 20 -> 10" in out, out[-3000:]


class _Data:
  def __init__(self, train_size=256, num_classes=10):
    self.train_size, self.num_classes = train_size, num_classes


def test_fingerprint_covers_the_data_stream():
  """Every field of the data stream named in the issue is in the fingerprint and refused on resume;
  the truly safe ones are reported and allowed."""
  old = fault_config.get_config()
  saved = {
    "fingerprint": fingerprint.fingerprint(old, _Data()),
    "total_steps": 8,
    "config": json.loads(old.to_json()),
  }
  assert set(saved["fingerprint"]["data"]) == {
    "dataset",
    "tfds_version",
    "folder",
    "train_split",
    "train_examples",
    "num_classes",
    "image_size",
    "reader",
    "shuffle_buffer",
    "aug",
    "aug2",
  }
  changes = {
    "data.train_examples": (lambda c: c, _Data(train_size=300)),
    "data.num_classes": (lambda c: c, _Data(num_classes=5)),
    "data.train_split": (lambda c: setattr(c, "train_split", "test"), _Data()),
    "data.aug.color_strength": (lambda c: setattr(c.aug, "color_strength", 1.0), _Data()),
    "data.aug2": (lambda c: setattr(c, "aug2", c.aug.copy_and_resolve_references()), _Data()),
    "image_size": (lambda c: setattr(c, "image_size", 24), _Data()),
  }
  for name, (edit, data) in changes.items():
    new = fault_config.get_config()
    edit(new)
    with pytest.raises(checkpoint.IncompatibleCheckpointError, match=re.escape(name + ":")):
      fingerprint.check_resume(saved, new, 8, data)
  new = fault_config.get_config()
  new.log_every_steps, new.checkpoint_every_steps, new.knn.k = 5, 4, 7
  fingerprint.check_resume(saved, new, 16, _Data())  # safe: no error


def test_streaming_reader_fingerprints_its_shuffle_buffer(tmp_path):
  from tests.test_folder_dataset import make_folder  # pylint: disable=g-import-not-at-top

  make_folder(tmp_path / "imgs", {"train": ("a", "b")}, per_class=2)
  config = fault_config.get_config()
  config.dataset = f"folder:{tmp_path / 'imgs'}"
  config.cache = False
  data = _Data(4, 2)
  saved = {"fingerprint": fingerprint.fingerprint(config, data), "config": {}}
  assert saved["fingerprint"]["data"]["reader"] == "streaming"
  assert saved["fingerprint"]["data"]["folder"] == {"classes": ["a", "b"], "files": 4}
  config.shuffle_buffer = 7
  with pytest.raises(checkpoint.IncompatibleCheckpointError, match="data.shuffle_buffer"):
    fingerprint.check_resume(saved, config, 8, data)
  config.cache = True  # in memory: exact shuffle, the buffer is never read
  with pytest.raises(checkpoint.IncompatibleCheckpointError, match="data.reader"):
    fingerprint.check_resume(saved, config, 8, data)


# ----------------------------------------------------------------------------- integrity


@pytest.mark.slow  # three in-process runs (each compiles its step)
def test_flipped_byte_falls_back_then_nothing_restorable_is_an_error(tmp_path, caplog, capsys):
  """On a folder dataset (so the same runs check the class map saved in the workdir)."""
  from tests.test_folder_dataset import make_folder  # pylint: disable=g-import-not-at-top

  make_folder(tmp_path / "imgs", {"train": ("cat", "dog"), "test": ("dog",)}, per_class=8)
  config = fault_config.get_config()
  config.dataset = f"folder:{tmp_path / 'imgs'}"
  config.batch_size, config.total_steps, config.log_every_steps, config.knn.k = 8, 4, 2, 3
  workdir = str(tmp_path / "w")
  train.train_and_evaluate(config, workdir)
  with open(os.path.join(workdir, "class_map.json"), encoding="utf-8") as f:
    assert json.load(f) == {"cat": 0, "dog": 1}
  ckpts = os.path.join(workdir, "checkpoints")
  flip_byte(os.path.join(ckpts, "4"))

  config.total_steps = 6
  with caplog.at_level(logging.WARNING):
    train.train_and_evaluate(config, workdir)
  assert "Checkpoint at step 4 could not be restored (CorruptCheckpointError" in caplog.text
  assert "differ from their checksums" in caplog.text
  assert re.search(r"Resumed from \S+/checkpoints/2 at step 2\.", capsys.readouterr().out)
  assert sorted(os.listdir(ckpts)) == ["2", "4", "6"]  # step 4 written again after the fallback
  assert os.listdir(ckpts + checkpoint.CORRUPT_SUFFIX)[0].startswith("4-")

  for step in ("2", "4", "6"):
    flip_byte(os.path.join(ckpts, step))
  before = snapshot(workdir)
  with pytest.raises(checkpoint.NoRestorableCheckpointError) as err:
    train.train_and_evaluate(config, workdir)
  msg = str(err.value)
  assert "None of the 3 checkpoint(s)" in msg and all(f"step {s}:" in msg for s in (2, 4, 6))
  assert "use a new --workdir" in msg
  assert snapshot(workdir) == before  # nothing moved, nothing written


# ----------------------------------------------------------------------------- disk full


def _small_filesystem(path: str, size_mb: int) -> bool:
  os.makedirs(path, exist_ok=True)
  r = subprocess.run(
    ["mount", "-t", "tmpfs", "-o", f"size={size_mb}m", "tmpfs", path], capture_output=True
  )
  return r.returncode == 0


_MICRO = "--config.model.name=resnet_micro"


@pytest.mark.slow
def test_disk_full_save_fails_in_one_line_and_next_start_resumes(tmp_path):
  """A tmpfs of 8 MB (root; else the file-size limit of `ulimit -f`): checkpoint 2 fits, then the
  disk is filled; the save of step 4 fails with one line naming the step and the intact checkpoint;
  after freeing space the same command resumes from step 2 and finishes."""
  mnt = str(tmp_path / "mnt")
  # The micro ResNet's 2.6 MB checkpoint does not fit in the 300 kB left below; the tiny config's
  # resnet_nano's would.
  mounted = _small_filesystem(mnt, 8)
  workdir = os.path.join(mnt, "w")
  env = subprocess_env()
  try:
    rc, out = finish(launch(workdir, env, "--config.total_steps=2", _MICRO))
    assert rc == 0, out[-3000:]
    filler = os.path.join(mnt, "filler")
    if mounted:
      free = os.statvfs(mnt).f_bavail * os.statvfs(mnt).f_frsize
      with open(filler, "wb") as f:
        f.truncate(0)
        f.write(b"\0" * (free - 300 * 1024))  # leave room for logs, not for a 2.6 MB checkpoint
      proc = launch(workdir, env, "--config.total_steps=4", _MICRO)
    else:  # no mount: a per-file size limit below the checkpoint's largest file
      cmd = ["bash", "-c", 'ulimit -f 64 && exec "$@"', "bash"]
      proc = subprocess.Popen(
        cmd + launch_args(workdir, "--config.total_steps=4", _MICRO),
        cwd=os.path.dirname(os.path.dirname(__file__)),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
      )
    rc, out = finish(proc)
    assert rc != 0, out[-3000:]
    line = out.strip().splitlines()[-1]
    assert line.startswith(
      "contrastive_jax.checkpoint.CheckpointSaveError: Could not write the checkpoint of step 4"
    ), out[-3000:]
    assert "disk full" in line and "the checkpoint of step 2 is intact" in line, line
    ckpt = checkpoint.Checkpointer(os.path.join(workdir, "checkpoints"))
    assert ckpt.all_steps() == [2] and ckpt.verify(2)
    ckpt.close()
    if mounted:
      os.remove(filler)
    rc, out = finish(launch(workdir, env, "--config.total_steps=4", _MICRO))
    assert rc == 0, out[-3000:]
    assert re.search(r"Resumed from \S+/checkpoints/2 at step 2\.", out), out[-3000:]
    with open(os.path.join(workdir, "results.json"), encoding="utf-8") as f:
      assert json.load(f)["steps"] == 4
  finally:
    if mounted:
      subprocess.run(["umount", mnt], check=False)


def launch_args(workdir: str, *overrides: str) -> list[str]:
  import sys  # pylint: disable=g-import-not-at-top

  return [
    sys.executable,
    "-m",
    "contrastive_jax.main",
    "--config=tests/fault_config.py:simclr",
    f"--workdir={workdir}",
    *overrides,
  ]


def test_a_field_added_to_the_code_since_the_checkpoint_is_not_a_difference(caplog):
  """A checkpoint written before a config field existed resumes (the field keeps its default and
  is reported); the same field changed against a checkpoint that has it is refused."""
  old = fault_config.get_config()
  saved = {"fingerprint": fingerprint.fingerprint(old, _Data()), "config": {}}
  del saved["fingerprint"]["head"]["use_bn"], saved["fingerprint"]["data"]["aug"]["flip"]
  with caplog.at_level(logging.WARNING):
    fingerprint.check_resume(saved, fault_config.get_config(), 8, _Data())
  assert "predates these fields" in caplog.text and "head.use_bn=True" in caplog.text
  assert "data.aug.flip=True" in caplog.text
  new = fault_config.get_config()
  new.head.out_dim = 8
  with pytest.raises(checkpoint.IncompatibleCheckpointError, match=r"head: checkpoint has"):
    fingerprint.check_resume(saved, new, 8, _Data())
