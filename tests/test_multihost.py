"""Multi-host for real: two processes on this machine (jax.distributed on localhost, gloo CPU collectives,
4 fake devices each) train the tiny config like one process with 8 devices, through a preemption.

Run 1: process 0 gets SIGTERM after step 3; JAX's preemption service propagates it, both processes
save the same step and exit 0. Run 2: both resume and finish. The loss curve (metrics.jsonl, written
by process 0 only) and the final parameters equal those of one 8-device process fed the same global
batches. Runs 3 and 4 go on from there: a corrupt newest checkpoint and a changed config, decided by
process 0 and followed by process 1.
"""

import glob
import json
import os
import re
import socket

import numpy as np
import pytest

from contrastive_jax import preemption
from tests import fault_config
from tests.test_fault_tolerance import (
  assert_trees_close,
  finish,
  launch,
  logged_losses,
  reference_run,
  restore_params,
  subprocess_env,
)


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def _run_pair(workdir: str, cache: str, *overrides: str, **extra) -> list[tuple[int, str]]:
  port = _free_port()
  procs = [
    launch(
      workdir,
      subprocess_env(
        4,
        JAX_COORDINATOR_ADDRESS=f"localhost:{port}",
        JAX_NUM_PROCESSES=2,
        JAX_PROCESS_ID=i,
        JAX_COMPILATION_CACHE_DIR=cache,
        **extra,
      ),
      *overrides,
    )
    for i in range(2)
  ]
  try:
    return [finish(p, timeout=500) for p in procs]
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()


@pytest.mark.slow
def test_two_processes_equal_one_through_preemption_then_agree_on_corruption_and_config(tmp_path):
  """Run 1 is preempted, run 2 resumes and finishes like one 8-device process. Then process 0
  decides and process 1 follows: a flipped byte in the newest checkpoint makes BOTH restore the
  previous one (run 3), and a changed config makes both stop at once (run 4; none trains alone,
  none waits for a barrier that never comes). One chain of runs, so the corruption runs start from
  the finished run's checkpoints instead of training a pair of their own (~30 s of two processes)."""
  from tests.test_resume_safety import flip_byte  # pylint: disable=g-import-not-at-top

  workdir, cache = str(tmp_path / "w"), os.environ["JAX_COMPILATION_CACHE_DIR"]

  outs = _run_pair(workdir, cache, **{preemption.TEST_SIGTERM_ENV: 3})
  for i, (rc, out) in enumerate(outs):
    assert rc == 0, f"process {i}:\n{out[-4000:]}"
  stops = [re.search(r"Preempted at step (\d+)/8", out) for _, out in outs]
  assert all(stops), [out[-2000:] for _, out in outs]
  step = int(stops[0].group(1))
  assert step == int(stops[1].group(1)) and 3 <= step < 8  # the same step on both processes
  saved = os.path.join(workdir, "checkpoints", str(step))
  assert os.path.isdir(saved)
  # Each process wrote its own part of the checkpoint.
  assert glob.glob(os.path.join(saved, "state", "ocdbt.process_0")), os.listdir(saved + "/state")
  assert glob.glob(os.path.join(saved, "state", "ocdbt.process_1")), os.listdir(saved + "/state")

  outs = _run_pair(workdir, cache)
  for i, (rc, out) in enumerate(outs):
    assert rc == 0, f"process {i}:\n{out[-4000:]}"
  assert "Results:" in outs[0][1] and "Results:" not in outs[1][1]

  # Only process 0 writes logs: each step is logged once per run.
  with open(os.path.join(workdir, "metrics.jsonl"), encoding="utf-8") as f:
    steps = [json.loads(line)["step"] for line in f if '"loss"' in line]
  assert steps == list(range(1, step + 1)) + list(range(step + 1, 9)), steps
  for name in ("config.json", "results.json"):
    assert os.path.exists(os.path.join(workdir, name))

  ref_state, ref_losses = reference_run(fault_config.get_config(), process_count=2)
  final_step, state = restore_params(workdir, ref_state)
  assert final_step == 8
  logged = logged_losses(workdir)
  np.testing.assert_allclose([logged[s] for s in range(1, 9)], ref_losses, rtol=1e-5)
  # Gloo's cross-process all-reduce sums in another order than one process does; AdamW divides by
  # sqrt(v), which turns that float32 noise in near-zero gradient entries into ~1e-5 on a few
  # weights.
  assert_trees_close(state.params, ref_state.params, rtol=1e-4, atol=2e-5)
  assert_trees_close(state.batch_stats, ref_state.batch_stats, rtol=1e-4, atol=1e-5)

  # Run 3: the newest checkpoint (step 8) is corrupt; both processes fall back to step 6.
  flip_byte(os.path.join(workdir, "checkpoints", "8"))
  outs = _run_pair(workdir, cache, "--config.total_steps=10")
  for i, (rc, out) in enumerate(outs):
    assert rc == 0, f"process {i}:\n{out[-4000:]}"
    assert re.search(r"Resumed from \S+/checkpoints/6 at step 6\.", out) or i == 1, out[-3000:]
    assert "Checkpoint at step 8 could not be restored" in out, f"process {i}:\n{out[-3000:]}"
  assert "differ from their checksums" in outs[0][1]

  # Run 4: a changed head; both refuse to resume.
  outs = _run_pair(workdir, cache, "--config.total_steps=12", "--config.head.out_dim=32")
  for i, (rc, out) in enumerate(outs):
    assert rc != 0, f"process {i}:\n{out[-4000:]}"
  assert "head: checkpoint has" in outs[0][1], outs[0][1][-3000:]
  assert "incompatible with this configuration" in outs[1][1], outs[1][1][-3000:]


@pytest.mark.slow
def test_sigterm_flag_is_agreed_without_the_preemption_service(tmp_path):
  """With JAX's preemption service off, process 0's SIGTERM reaches process 1 through the all-gather
  of the flags (every min(10, log_every_steps) steps): both save step 3 and exit 0."""
  workdir = str(tmp_path / "w")
  outs = _run_pair(
    workdir,
    os.environ["JAX_COMPILATION_CACHE_DIR"],
    JAX_ENABLE_PREEMPTION_SERVICE="false",
    **{preemption.TEST_SIGTERM_ENV: 3},
  )
  for i, (rc, out) in enumerate(outs):
    assert rc == 0, f"process {i}:\n{out[-4000:]}"
    assert "Preempted at step 3/8; checkpoint saved to" in out, out[-3000:]
  assert "Received SIGTERM" in outs[0][1] and "Received SIGTERM" not in outs[1][1]
  state_dir = os.path.join(workdir, "checkpoints", "3", "state")
  assert sorted(glob.glob(os.path.join(state_dir, "ocdbt.process_*"))) == [
    os.path.join(state_dir, f"ocdbt.process_{i}") for i in range(2)
  ]
