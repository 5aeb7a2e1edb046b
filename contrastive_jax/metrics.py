"""Metric writing (TensorBoard + metrics.jsonl, process 0 only) and the console progress line.

Workdirs are epath paths (local or a URI such as gs://bucket/run; see contrastive_jax/workdir.py).
metrics.jsonl is an `Appender`: appended and flushed locally, rewritten whole on each write on an
object store, so a kill never loses more than the row being written. TensorBoard event files are
written by tf.summary into a local directory (the workdir's tensorboard/ for local workdirs; a
temporary one for URIs, whose event files are copied whole to W/tensorboard/ after every flush), so
the same code serves any scheme epath serves.
"""

import json
import math
import os
import shutil
import sys
import tempfile
import time
from typing import Any
from collections.abc import Mapping

import jax
import numpy as np

from contrastive_jax import workdir as workdir_lib


def _scalar(v: Any) -> float:
  return float(np.asarray(v))


def _path(p):
  return workdir_lib.resolve(p) if isinstance(p, str) else p


class MetricWriter:
  """Writes scalars to W/metrics.jsonl and TensorBoard event files from process 0.

  TensorBoard needs TensorFlow; where it is missing (a GPU benchmark box) only the
  JSON lines are written.
  """

  def __init__(self, workdir, *, enabled: bool | None = None):
    self.enabled = jax.process_index() == 0 if enabled is None else enabled
    self._tb = None
    self._jsonl = None
    self._staging = None
    if not self.enabled:
      return
    workdir = _path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    self._jsonl = workdir_lib.Appender(workdir / "metrics.jsonl")
    self._tb_dest = workdir / "tensorboard"
    tb_dir = os.fspath(self._tb_dest)
    if workdir_lib.is_uri(workdir):
      self._staging = tempfile.mkdtemp(prefix="contrastive_jax_tb_")
      tb_dir = self._staging
    try:
      import tensorflow as tf  # pylint: disable=g-import-not-at-top

      self._tf = tf
      self._tb = tf.summary.create_file_writer(tb_dir)
    except ImportError:
      self._tb = None

  def write(self, step: int, metrics: Mapping[str, Any]) -> None:
    if not self.enabled:
      return
    row = {"step": int(step)}
    row.update({k: _scalar(v) for k, v in metrics.items()})
    self._jsonl.write(json.dumps(row) + "\n")
    if self._tb is not None:
      with self._tb.as_default():
        for k, v in row.items():
          if k != "step" and math.isfinite(v):
            self._tf.summary.scalar(k, v, step=int(step))
      self._tb.flush()
      self._mirror()

  def write_images(self, step: int, images: Mapping[str, Any]) -> None:
    """Writes figures to TensorBoard's Images tab: {tag: PNG path (str or epath) or uint8 (H, W, 3)}.

    The same event files as the scalars, so a gs:// workdir gets them the same way.
    """
    if not self.enabled or self._tb is None:
      return
    tf = self._tf
    with self._tb.as_default():
      for tag, image in images.items():
        if not isinstance(image, np.ndarray):  # a PNG file: decoded as RGB (alpha dropped)
          image = tf.io.decode_png(_path(image).read_bytes(), channels=3)
        self._tf.summary.image(tag, tf.expand_dims(image, 0), step=int(step))
    self._tb.flush()
    self._mirror()

  def _mirror(self) -> None:
    """Copies the staged event files to the workdir URI (whole objects; no append there)."""
    if self._staging is None:
      return
    self._tb_dest.mkdir(parents=True, exist_ok=True)
    for name in os.listdir(self._staging):
      with open(os.path.join(self._staging, name), "rb") as f:
        (self._tb_dest / name).write_bytes(f.read())

  def close(self) -> None:
    if self._jsonl:
      self._jsonl.close()
    if self._tb is not None:
      self._tb.close()
      self._mirror()
      self._tb = None
    if self._staging is not None:
      shutil.rmtree(self._staging, ignore_errors=True)
      self._staging = None


class Progress:
  """One console line per log step: step, loss, images/s, ETA."""

  def __init__(self, total_steps: int, start_step: int, batch_size: int):
    self.total, self.batch = total_steps, batch_size
    self._t, self._s = time.time(), start_step
    self._t0, self._s0 = self._t, start_step

  def rate(self, step: int) -> float:
    """Images per second since the previous call."""
    now = time.time()
    dt, ds = now - self._t, step - self._s
    self._t, self._s = now, step
    return ds * self.batch / dt if dt > 0 and ds > 0 else 0.0

  def line(self, step: int, metrics: Mapping[str, float], images_per_sec: float) -> str:
    elapsed = time.time() - self._t0
    done = step - self._s0
    eta = elapsed / done * (self.total - step) if done > 0 else float("nan")
    width = 24
    filled = int(width * step / max(self.total, 1))
    bar = "#" * filled + "." * (width - filled)
    extra = " ".join(
      f"{k}={metrics[k]:.4g}" for k in ("probe_accuracy", "contrastive_accuracy") if k in metrics
    )
    return (
      f"[{bar}] step {step}/{self.total} loss={metrics.get('loss', float('nan')):.4f} "
      f"{extra} {images_per_sec:.0f} img/s ETA {_fmt_time(eta)}"
    )

  def print(self, step, metrics, images_per_sec) -> None:
    if jax.process_index() == 0:
      print(self.line(step, metrics, images_per_sec), file=sys.stdout, flush=True)


def _fmt_time(s: float) -> str:
  if not math.isfinite(s):
    return "--:--"
  s = int(s)
  return (
    f"{s // 3600:d}:{s % 3600 // 60:02d}:{s % 60:02d}"
    if s >= 3600
    else f"{s // 60:02d}:{s % 60:02d}"
  )


def write_json(path, obj: Mapping[str, Any]) -> None:
  """Writes a JSON file whole (tmp + rename locally, one object upload on a URI): a crash never
  leaves half a file. `path`: str or epath.Path."""
  workdir_lib.write_text(_path(path), json.dumps(obj, indent=2, sort_keys=True))


def update_results(workdir, new: Mapping[str, Any]) -> dict:
  """Merges numbers into W/results.json (process 0)."""
  path = _path(workdir) / "results.json"
  results = json.loads(path.read_text()) if path.exists() else {}
  results.update(
    {k: (v if isinstance(v, (str, int, list, dict)) else _scalar(v)) for k, v in new.items()}
  )
  if jax.process_index() == 0:
    write_json(path, results)
  return results
