"""One workdir, one job: W/lock.json names its owner and carries a heartbeat.

Process 0 of a job takes the lock before anything is written, refreshes its heartbeat every
`HEARTBEAT_S` seconds from a daemon thread, and removes it when the run ends in any way the process
survives (completion, preemption, an error). A second job on the same workdir:
- finds a lock whose owner is alive (same host and its pid runs, or the heartbeat advances while it
  watches for up to `STALE_S` seconds) -> refuses to start, naming the owner;
- finds a stale lock (same host and the pid is gone, or a heartbeat that did not move for
  `STALE_S` seconds: a SIGKILLed or lost job) -> takes it over and logs whose it was.

Local workdirs create the lock with O_EXCL, so two jobs starting together cannot both win. Object
stores (gs://) have no exclusive create through epath: the lock is written, then read back after a
short pause, and the job whose token is not there refuses; two jobs started within that pause of
each other can both pass (documented limit; GCS generation preconditions would close it).
"""

import json
import logging
import os
import socket
import threading
import time
import uuid

from etils import epath

from contrastive_jax import workdir as workdir_lib

NAME = "lock.json"
HEARTBEAT_S = 10.0
STALE_S = 60.0


class WorkdirLockedError(RuntimeError):
  """Another live job holds this workdir."""


def _pid_alive(pid: int) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:  # alive, another user's
    return True
  return True


class Lock:
  """The workdir lock of one job (use from process 0 only)."""

  def __init__(self, workdir: epath.Path, *, heartbeat_s=HEARTBEAT_S, stale_s=STALE_S):
    self.path = workdir / NAME
    self.heartbeat_s, self.stale_s = heartbeat_s, stale_s
    self.token = uuid.uuid4().hex
    self.owner = {"host": socket.gethostname(), "pid": os.getpid(), "token": self.token}
    self._stop = threading.Event()
    self._thread = None
    self.lost = False

  def _read(self) -> dict | None:
    try:
      return json.loads(self.path.read_text())
    except FileNotFoundError:
      return None
    except ValueError:  # half-written by a job killed mid-write
      return {"host": "?", "pid": -1, "heartbeat": 0.0}

  def _record(self) -> str:
    return json.dumps(dict(self.owner, started=self._started, heartbeat=time.time()))

  def acquire(self) -> None:
    """Takes the lock or raises WorkdirLockedError."""
    self._started = time.time()
    held = self._read()
    if held is not None:
      self._judge(held)  # raises when its owner is alive
    if workdir_lib.is_uri(self.path):
      self.path.write_text(self._record())
      time.sleep(min(2.0, self.heartbeat_s))
      now = self._read() or {}
      if now.get("token") != self.token:
        raise WorkdirLockedError(self._message(now, "took the lock at the same moment"))
    else:
      if held is not None:
        self.path.unlink(missing_ok=True)
      try:
        fd = os.open(os.fspath(self.path), os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
      except FileExistsError:
        raise WorkdirLockedError(
          self._message(self._read() or {}, "took the lock at the same moment")
        ) from None
      with os.fdopen(fd, "w") as f:
        f.write(self._record())
    self._thread = threading.Thread(target=self._beat, name="workdir-lock", daemon=True)
    self._thread.start()

  def _judge(self, held: dict) -> None:
    host, pid = held.get("host"), int(held.get("pid", -1))
    if host == self.owner["host"]:
      if pid > 0 and _pid_alive(pid):
        raise WorkdirLockedError(self._message(held, "is running"))
      why = f"its process {pid} on this host is gone"
    else:  # another host: alive while its heartbeat advances
      first = held.get("heartbeat", 0.0)
      deadline = time.time() + max(0.0, self.stale_s - (time.time() - first))
      while time.time() < deadline:
        time.sleep(min(self.heartbeat_s, max(0.0, deadline - time.time())))
        again = self._read()
        if again is None:
          return
        if again.get("heartbeat") != first:
          raise WorkdirLockedError(self._message(again, "is running (its heartbeat advances)"))
      why = f"its heartbeat is {time.time() - first:.0f}s old (stale after {self.stale_s:.0f}s)"
    logging.warning(
      "Taking over the lock %s of a job that is no longer running (%s on %s, pid %s; %s).",
      os.fspath(self.path),
      held.get("token", "?")[:8],
      host,
      pid,
      why,
    )

  def _message(self, held: dict, state: str) -> str:
    return (
      f"Another job (host {held.get('host')!r}, pid {held.get('pid')}) {state} on workdir "
      f"{os.fspath(self.path.parent)}: two jobs on one workdir would overwrite each other's "
      f"checkpoints. Wait for it to finish, stop it, or use another --workdir. (A lock left by a "
      f"killed job is taken over automatically once stale: {self.stale_s:.0f}s without a heartbeat.)"
    )

  def _beat(self) -> None:
    while not self._stop.wait(self.heartbeat_s):
      try:
        held = self._read() or {}
        if held.get("token") != self.token:
          self.lost = True
          logging.error("Lost the workdir lock %s to %s.", os.fspath(self.path), held)
          return
        workdir_lib.write_text(self.path, self._record())
      except Exception as e:  # pylint: disable=broad-except  # a storage hiccup: retry next beat
        logging.warning("Could not refresh the workdir lock (%s); retrying.", e)

  def release(self) -> None:
    self._stop.set()
    if self._thread is not None:
      self._thread.join(timeout=5)
    try:
      if (self._read() or {}).get("token") == self.token:
        self.path.unlink(missing_ok=True)
    except Exception as e:  # pylint: disable=broad-except
      logging.warning("Could not remove the workdir lock %s (%s).", os.fspath(self.path), e)
