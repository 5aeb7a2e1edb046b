"""One workdir, one job: two real processes (a live job refuses the second; after a SIGKILL the
stale lock is taken over and logged), and the heartbeat rule for jobs on other hosts."""

import json
import logging
import os
import subprocess
import sys
import threading
import time

import pytest
from etils import epath

from contrastive_jax import joblock
from tests.test_fault_tolerance import REPO, finish, launch, subprocess_env


@pytest.mark.slow
def test_second_job_refused_while_first_lives_then_stale_lock_taken_over(tmp_path):
  workdir = str(tmp_path / "w")
  env = subprocess_env()
  log_a = open(tmp_path / "a.log", "w+", encoding="utf-8")  # a file: a long run must not block
  a = subprocess.Popen(
    [
      sys.executable,
      *("-m", "contrastive_jax.main", "--config=tests/fault_config.py:simclr"),
      f"--workdir={workdir}",
      *("--config.total_steps=100000", "--config.log_every_steps=5"),
    ],
    cwd=REPO,
    env=env,
    stdout=log_a,
    stderr=subprocess.STDOUT,
  )
  try:
    deadline = time.time() + 900
    # Wait for any finished checkpoint past step 2, not for one step's directory: the job keeps the
    # last few only, and on a fast machine checkpoints/4 was saved and deleted between two polls
    # (CI on 8879f8b: 900 s waiting while the job reached step 9105).
    while _finished_steps(workdir, above=2) == []:
      assert a.poll() is None and time.time() < deadline, open(tmp_path / "a.log").read()[-3000:]
      time.sleep(0.2)
    t0 = time.time()
    rc, out = finish(launch(workdir, env), timeout=600)
    refused_s = time.time() - t0
    assert rc != 0, out[-3000:]
    assert f"pid {a.pid}) is running on workdir" in out, out[-3000:]
    assert a.poll() is None  # the first job was not disturbed
  finally:
    a.kill()
    a.wait()
    log_a.close()
  with open(os.path.join(workdir, joblock.NAME), encoding="utf-8") as f:
    assert json.load(f)["pid"] == a.pid  # the killed job's lock stays behind
  latest = max(int(s) for s in os.listdir(os.path.join(workdir, "checkpoints")) if s.isdigit())
  rc, out = finish(launch(workdir, env, f"--config.total_steps={latest + 1}"))
  assert rc == 0, out[-3000:]
  assert "Taking over the lock" in out and f"its process {a.pid} on this host is gone" in out
  assert f"checkpoints/{latest} at step {latest}." in out, out[-3000:]
  assert not os.path.exists(os.path.join(workdir, joblock.NAME))
  print(f"second job refused {refused_s:.0f}s after its start")


def _finished_steps(workdir: str, above: int) -> list[int]:
  """The steps of the checkpoints Orbax has finalised (temporary directories carry a suffix)."""
  try:
    names = os.listdir(os.path.join(workdir, "checkpoints"))
  except FileNotFoundError:
    return []
  return sorted(int(s) for s in names if s.isdigit() and int(s) > above)


def _write(path, host, heartbeat):
  path.write_text(json.dumps({"host": host, "pid": 1, "token": "t", "heartbeat": heartbeat}))


def test_lock_of_another_host_is_live_while_its_heartbeat_advances(tmp_path, caplog):
  wd = epath.Path(tmp_path)
  lock_file = wd / joblock.NAME
  _write(lock_file, "other-host", time.time())
  stop = threading.Event()

  def beat():  # the other host's job, alive
    while not stop.wait(0.1):
      _write(lock_file, "other-host", time.time())

  t = threading.Thread(target=beat)
  t.start()
  try:
    with pytest.raises(joblock.WorkdirLockedError, match="heartbeat advances"):
      joblock.Lock(wd, heartbeat_s=0.1, stale_s=1.0).acquire()
  finally:
    stop.set()
    t.join()
  # The same lock, now silent: stale after stale_s, taken over, and the log says whose it was.
  lock = joblock.Lock(wd, heartbeat_s=0.1, stale_s=0.5)
  with caplog.at_level(logging.WARNING):
    lock.acquire()
  assert "Taking over the lock" in caplog.text and "other-host" in caplog.text
  assert json.loads(lock_file.read_text())["token"] == lock.token
  time.sleep(0.3)
  assert json.loads(lock_file.read_text())["heartbeat"] > time.time() - 1  # our heartbeat runs
  lock.release()
  assert not lock_file.exists()
