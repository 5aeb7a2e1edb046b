"""Profiling on demand: config.profile_num_steps > 0 writes a jax.profiler trace of those steps under
W/tensorboard/plugins/profile (TensorBoard's profile tab); off by default."""

import glob
import json
import logging
import os

import pytest
from tensorflow.tsl.profiler.protobuf import xplane_pb2

from contrastive_jax import fingerprint, profiling, validate
from contrastive_jax.config_lib import base
from tests.pretrain_fixture import tiny_run


def _step_annotations(xplane_path) -> list[int]:
  """step_num of every 'train' StepTraceAnnotation event in a trace."""
  space = xplane_pb2.XSpace()
  with open(xplane_path, "rb") as f:
    space.ParseFromString(f.read())
  steps = []
  for plane in space.planes:
    names = {i: m.name for i, m in plane.event_metadata.items()}
    stat_names = {i: m.name for i, m in plane.stat_metadata.items()}
    for line in plane.lines:
      for event in line.events:
        if names.get(event.metadata_id) != "train":
          continue
        for stat in event.stats:
          if stat_names.get(stat.metadata_id) == "step_num":
            steps.append(int(stat.int64_value or stat.uint64_value or stat.str_value or 0))
  return sorted(steps)


def test_trace_of_the_configured_steps(tmp_path):
  w = tiny_run(str(tmp_path / "run"), total_steps=4, profile_start_step=1, profile_num_steps=2)
  traces = glob.glob(os.path.join(w, "tensorboard", "plugins", "profile", "*", "*.xplane.pb"))
  assert len(traces) == 1, traces
  assert os.path.getsize(traces[0]) > 0
  assert _step_annotations(traces[0]) == [2, 3]  # steps (1, 1 + 2]: neither 1 nor 4


def test_off_by_default_and_after_the_window(tmp_path):
  c = base.base_config()
  assert c.profile_num_steps == 0
  p = profiling.Profiler(c, str(tmp_path))
  for step in range(30):
    p.after_step(step, None)
  p.stop()
  assert not p.enabled and not os.path.exists(tmp_path / "tensorboard")
  c.profile_num_steps = 5
  resumed = profiling.Profiler(c, str(tmp_path), start_step=15)  # resumed after steps 11-15
  for step in range(15, 30):
    resumed.after_step(step, None)
  assert not os.path.exists(tmp_path / "tensorboard")


def test_bad_profile_fields_are_config_errors():
  c = base.base_config()
  c.profile_num_steps = -1
  with pytest.raises(validate.ConfigError, match=r"config.profile_num_steps=-1: must be >= 0"):
    validate.check(c)


def test_profiling_fields_are_safe_to_change_on_resume(caplog):
  """Turning the profiler on (or another mode's fields) for a resumed run changes nothing trained."""
  old = base.base_config()
  saved = {
    "fingerprint": fingerprint.fingerprint(old),
    "total_steps": 10,
    "config": json.loads(old.to_json()),
  }
  new = base.base_config()
  new.profile_num_steps, new.profile_start_step, new.embed.k = 5, 3, 4
  with caplog.at_level(logging.WARNING):
    fingerprint.check_resume(saved, new, 10)
  assert "profile_num_steps: 0 -> 5" in caplog.text and "embed.k: 10 -> 4" in caplog.text
  assert "safe to change" in caplog.text and "changed training settings" not in caplog.text
