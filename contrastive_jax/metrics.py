"""Metric writing (TensorBoard + metrics.jsonl, process 0 only) and the console progress line."""

import json
import math
import os
import sys
import time
from typing import Any
from collections.abc import Mapping

import jax
import numpy as np


def _scalar(v: Any) -> float:
  return float(np.asarray(v))


class MetricWriter:
  """Writes scalars to W/metrics.jsonl and TensorBoard event files from process 0.

  TensorBoard needs TensorFlow; where it is missing (a GPU benchmark box) only the
  JSON lines are written.
  """

  def __init__(self, workdir: str, *, enabled: bool | None = None):
    self.enabled = jax.process_index() == 0 if enabled is None else enabled
    self._tb = None
    self._jsonl = None
    if not self.enabled:
      return
    os.makedirs(workdir, exist_ok=True)
    self._jsonl = open(os.path.join(workdir, "metrics.jsonl"), "a", encoding="utf-8")
    try:
      import tensorflow as tf  # pylint: disable=g-import-not-at-top

      self._tf = tf
      self._tb = tf.summary.create_file_writer(os.path.join(workdir, "tensorboard"))
    except ImportError:
      self._tb = None

  def write(self, step: int, metrics: Mapping[str, Any]) -> None:
    if not self.enabled:
      return
    row = {"step": int(step)}
    row.update({k: _scalar(v) for k, v in metrics.items()})
    self._jsonl.write(json.dumps(row) + "\n")
    self._jsonl.flush()
    if self._tb is not None:
      with self._tb.as_default():
        for k, v in row.items():
          if k != "step" and math.isfinite(v):
            self._tf.summary.scalar(k, v, step=int(step))
      self._tb.flush()

  def close(self) -> None:
    if self._jsonl:
      self._jsonl.close()
    if self._tb is not None:
      self._tb.close()


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


def write_json(path: str, obj: Mapping[str, Any]) -> None:
  """Atomically writes a JSON file (write to .tmp, then rename): a crash never leaves half a file."""
  tmp = path + ".tmp"
  with open(tmp, "w", encoding="utf-8") as f:
    json.dump(obj, f, indent=2, sort_keys=True)
  os.replace(tmp, path)


def update_results(workdir: str, new: Mapping[str, Any]) -> dict:
  """Merges numbers into W/results.json (process 0)."""
  path = os.path.join(workdir, "results.json")
  results = {}
  if os.path.exists(path):
    with open(path, encoding="utf-8") as f:
      results = json.load(f)
  results.update(
    {k: (v if isinstance(v, (str, int, list, dict)) else _scalar(v)) for k, v in new.items()}
  )
  if jax.process_index() == 0:
    write_json(path, results)
  return results
