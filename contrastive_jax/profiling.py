"""On-demand profiling: a jax.profiler trace of a few training steps into W/tensorboard.

config.profile_num_steps > 0 traces steps profile_start_step + 1 ... profile_start_step +
profile_num_steps (the default start, 10, leaves compilation and the first input-pipeline fill out
of the trace). The trace lands where TensorBoard's profile tab looks for it,
W/tensorboard/plugins/profile/<run>/<host>.xplane.pb (view it with `pip install
tensorboard-plugin-profile` and `tensorboard --logdir W/tensorboard`). For a URI workdir (gs://...)
the trace is written to a local temporary directory and copied there when it stops.

Each traced step is a jax.profiler.StepTraceAnnotation, so the profile's step view shows them
apart. Only process 0 traces (one host's view is what the profile tab shows per run).
"""

import contextlib
import logging
import os
import shutil
import tempfile

import jax

from contrastive_jax import workdir as workdir_lib


class Profiler:
  """Starts and stops the trace around the configured steps; `annotate(step)` marks each step."""

  def __init__(self, config, workdir, *, start_step: int = 0):
    self.start = int(config.get("profile_start_step", 0))
    self.num = int(config.get("profile_num_steps", 0))
    if self.num < 0 or self.start < 0:
      raise ValueError(
        f"config.profile_start_step={self.start}, config.profile_num_steps={self.num}: both must "
        f"be >= 0 (profile_num_steps 0: no trace); e.g. --config.profile_num_steps=5"
      )
    self.enabled = self.num > 0 and jax.process_index() == 0
    self.dest = workdir_lib.resolve(os.fspath(workdir)) / "tensorboard"
    self._local = None
    self._active = False
    self._done = start_step >= self.start + self.num  # resumed after the window
    self.trace_dir = None

  def annotate(self, step: int):
    """A StepTraceAnnotation for the step about to run (`step` = updates done so far + 1)."""
    if self._active:
      return jax.profiler.StepTraceAnnotation("train", step_num=step)
    return contextlib.nullcontext()

  def after_step(self, step: int, state) -> None:
    """Called with the number of updates done; starts or stops the trace at the window's ends."""
    if not self.enabled or self._done:
      return
    if not self._active and self.start <= step < self.start + self.num:
      jax.block_until_ready(state)  # earlier steps' work stays out of the trace
      self._local = (
        tempfile.mkdtemp(prefix="contrastive_jax_profile_")
        if workdir_lib.is_uri(self.dest)
        else os.fspath(self.dest)
      )
      jax.profiler.start_trace(self._local)
      self._active = True
      logging.info("Profiling steps %d-%d into %s.", step + 1, self.start + self.num, self.dest)
    elif self._active and step >= self.start + self.num:
      jax.block_until_ready(state)  # the traced steps' device work ends inside the trace
      self.stop()

  def stop(self) -> None:
    """Stops an active trace (also at the end of the run, or when it stops early)."""
    if not self._active:
      return
    jax.profiler.stop_trace()
    self._active, self._done = False, True
    if workdir_lib.is_uri(self.dest):
      for top, _, files in os.walk(self._local):
        for name in files:
          rel = os.path.relpath(os.path.join(top, name), self._local)
          target = self.dest / rel
          target.parent.mkdir(parents=True, exist_ok=True)
          with open(os.path.join(top, name), "rb") as f:
            target.write_bytes(f.read())
      shutil.rmtree(self._local, ignore_errors=True)
    self.trace_dir = os.fspath(self.dest / "plugins" / "profile")
    print(f"Profile trace written to {self.trace_dir}.", flush=True)
