"""A run's workdir as a URI: local paths and object stores (gs://...) through etils.epath.

Every workdir file of the loop (checkpoints, config.json, results.json, metrics.jsonl, TensorBoard
events, figures, the job lock) goes through `resolve(workdir)`, never through os.path: os.path
turns 'gs://b/r' into a local directory 'gs:/b/r'.

Object stores: writing one object is atomic (a reader sees the old or the new object, never half),
but there is no append and no atomic rename. `write_text` therefore writes the whole object;
`Appender` (metrics.jsonl, TensorBoard event files) keeps the file's bytes and rewrites the whole
object on each flush, so a kill loses at most the rows since the last flush.

GCS emulator: with STORAGE_EMULATOR_HOST set (gcsfs and the Google clients read it; tensorstore
reads TENSORSTORE_GCS_HTTP_URL), epath must use its fsspec (gcsfs) backend, because TensorFlow's
gfile, epath's default for gs:// when TensorFlow is installed, cannot be pointed at an emulator.
`resolve` selects it (EPATH_USE_TF=false) unless EPATH_USE_TF is set explicitly.
"""

import logging
import os
import re

from etils import epath

# Schemes etils.epath serves (with TensorFlow's gfile or fsspec); anything else fails at start.
SCHEMES = ("gs", "s3", "az", "hf")
EMULATOR_ENV = "STORAGE_EMULATOR_HOST"
TENSORSTORE_EMULATOR_ENV = "TENSORSTORE_GCS_HTTP_URL"
_URI = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
_HALF_URI = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):/[^/]")  # 'gs:/b/r': what os.path made of gs://


def is_uri(path) -> bool:
  return bool(_URI.match(os.fspath(path)))


def resolve(workdir: str, field: str = "--workdir") -> epath.Path:
  """The epath.Path of `workdir`; raises ValueError for a scheme that cannot be served.

  Args:
    workdir: a local path (made absolute) or a URI such as gs://bucket/run.
    field: the flag or config field the path came from, for error messages.

  Returns:
    The path; local ones absolute, URIs as given.
  """
  text = os.fspath(workdir)
  m = _URI.match(text)
  if not m:
    if _HALF_URI.match(text):
      raise ValueError(
        f"{field}={text!r} looks like a URI with one slash missing after the scheme; write "
        f"{_fix_half_uri(text)!r} (or ./{text} if you really mean a local directory)."
      )
    return epath.Path(os.path.abspath(os.path.expanduser(text)))
  scheme = m.group(1).lower()
  if scheme not in SCHEMES:
    raise ValueError(
      f"{field}={text!r}: the scheme {scheme}:// cannot be served (etils.epath handles "
      f"{', '.join(s + '://' for s in SCHEMES)} and local paths); use e.g. gs://bucket/run or "
      f"/path/to/run."
    )
  if scheme == "gs":
    _configure_gcs(field, text)
  return epath.Path(text)


def _fix_half_uri(text: str) -> str:
  scheme, rest = text.split(":/", 1)
  return f"{scheme}://{rest}"


def _configure_gcs(field: str, text: str) -> None:
  """Routes gs:// to the emulator's backend when STORAGE_EMULATOR_HOST is set (see module doc)."""
  if not os.environ.get(EMULATOR_ENV):
    return
  if not os.environ.get(TENSORSTORE_EMULATOR_ENV):
    raise ValueError(
      f"{field}={text!r} with {EMULATOR_ENV} set but not {TENSORSTORE_EMULATOR_ENV}: the "
      f"checkpoint arrays (tensorstore) would go to real GCS and every other file to the "
      f"emulator. Set {TENSORSTORE_EMULATOR_ENV}=${EMULATOR_ENV} (and "
      f"GOOGLE_AUTH_TOKEN_FOR_TESTING=any) too."
    )
  if "EPATH_USE_TF" not in os.environ:
    os.environ["EPATH_USE_TF"] = "false"
    # etils caches its backend choice on the first gs:// path; drop a stale choice.
    try:
      from etils.epath import gpath  # pylint: disable=g-import-not-at-top

      gpath._is_tf_installed.cache_clear()  # pylint: disable=protected-access
    except AttributeError:
      pass
  # gcsfs warns on every bucket that it cannot find real credentials to ask for the bucket's type.
  logging.getLogger("gcsfs").setLevel(logging.ERROR)


def check_writable(path: epath.Path, process_index: int, field: str = "--workdir") -> None:
  """Fails before any training when this process cannot write to `path`."""
  probe = path / f".write_test_{process_index}"
  try:
    path.mkdir(parents=True, exist_ok=True)
    probe.write_text("ok")
    probe.unlink()
  except Exception as e:  # pylint: disable=broad-except  # OSError locally, client errors on URIs
    raise PermissionError(
      f"{field}={os.fspath(path)!r} cannot be written ({type(e).__name__}: {str(e)[:300]}). "
      f"Checkpoints and logs go there: pass a {field} this user can write to."
    ) from None


def write_bytes(path: epath.Path, data: bytes) -> None:
  """Writes a whole file so that a crash never leaves half of it (tmp + rename locally; one object
  upload on an object store, which is atomic there)."""
  if is_uri(path):
    path.write_bytes(data)
    return
  tmp = path.parent / (path.name + ".tmp")
  tmp.write_bytes(data)
  os.replace(os.fspath(tmp), os.fspath(path))


def write_text(path: epath.Path, text: str) -> None:
  """`write_bytes` of UTF-8 text."""
  write_bytes(path, text.encode("utf-8"))


class Appender:
  """An append-only text file that survives a kill at any moment, on any epath backend.

  Locally it is an ordinary file opened for append, flushed on every write. On an object store
  (no append), the file's whole content is kept in memory and the object is rewritten on each
  `write`; the object holds every row up to the last write. The cost is O(file size) per write:
  metrics.jsonl of a long run is a few MB.
  """

  def __init__(self, path: epath.Path):
    self.path = path
    self._uri = is_uri(path)
    self._f = None
    self._content = ""
    if self._uri:
      self._content = path.read_text() if path.exists() else ""
    else:
      path.parent.mkdir(parents=True, exist_ok=True)
      self._f = open(os.fspath(path), "a", encoding="utf-8")  # noqa: SIM115 (closed in close())

  def write(self, text: str) -> None:
    if self._uri:
      self._content += text
      self.path.write_text(self._content)
    else:
      self._f.write(text)
      self._f.flush()

  def close(self) -> None:
    if self._f is not None:
      self._f.close()
      self._f = None
