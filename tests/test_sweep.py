"""Sweeps: grid, names, LR rule per run, launch commands, and resuming without repeating finished runs."""

import json
import os

import pytest

from configs import sweep_batch_size
from contrastive_jax import optim
from contrastive_jax.batch_scaling import sweep


def _tiny_sweep_config():
  c = sweep_batch_size.get_config("cpu")
  c.sweep.batch_sizes = (64, 2048)
  c.sweep.epochs = (1.0,)
  return c


def test_grid_names_and_overrides():
  c = _tiny_sweep_config()
  pts = sweep.grid(c.sweep)
  names = [sweep.run_name(p) for p in pts]
  assert names == [
    "bs64_ep1_linear_t0.5",
    "bs2048_ep1_linear_t0.5",
    "bs64_ep1_sqrt_t0.5",
    "bs2048_ep1_sqrt_t0.5",
  ]
  rc = sweep.run_config(c, pts[3], num_devices=1)
  assert rc.mode == "pretrain" and rc.batch_size == 2048 and rc.optim.lr_scaling == "sqrt"
  assert rc.grad_cache_chunk == 512 and c.mode == "sweep"  # the sweep config is untouched
  assert optim.learning_rate(rc.optim.base_lr, 2048, "sqrt") == pytest.approx(0.075 * 2048**0.5)
  small = sweep.run_config(c, pts[0], num_devices=1)
  assert small.grad_cache_chunk == 0
  assert optim.learning_rate(small.optim.base_lr, 64, "linear") == pytest.approx(0.3 * 64 / 256)
  # On 8 devices, 2048 is 256 rows per device: no gradient cache needed.
  assert sweep.run_config(c, pts[3], num_devices=8).grad_cache_chunk == 0


def test_print_one_command_per_run(tmp_path):
  c = _tiny_sweep_config()
  lines = []
  sweep.print_commands(c, str(tmp_path), 8, out=lines.append)
  assert len(lines) == 4
  assert "--config=configs/sweep_batch_size.py:cpu" in lines[0]
  assert f"--workdir={tmp_path}/bs64_ep1_linear_t0.5" in lines[0]
  assert "--config.mode=pretrain" in lines[0] and "--config.optim.base_lr=0.075" in lines[2]
  assert os.path.exists(tmp_path / "launch_commands.sh")


def test_sweep_resumes_without_repeating_finished_runs(tmp_path):
  c = _tiny_sweep_config()
  calls = []

  def fake_train(rc, workdir, fail_on=None):
    calls.append(os.path.basename(workdir))
    if os.path.basename(workdir) == fail_on:
      # Killed mid-run: a checkpoint-like file and partial results, but no train_time_s.
      with open(os.path.join(workdir, "results.json"), "w") as f:
        json.dump({"knn_top1_random_init": 0.1}, f)
      raise KeyboardInterrupt
    with open(os.path.join(workdir, "results.json"), "w") as f:
      json.dump({"knn_top1": 0.3, "train_time_s": 1.0, "batch": rc.batch_size}, f)
    return {}

  # One run finished before the sweep starts.
  pre = tmp_path / "bs2048_ep1_linear_t0.5"
  pre.mkdir()
  (pre / "results.json").write_text(json.dumps({"knn_top1": 0.5, "train_time_s": 2.0}))
  with pytest.raises(KeyboardInterrupt):
    sweep.run_all(
      c,
      str(tmp_path),
      num_devices=1,
      train_fn=lambda rc, w: fake_train(rc, w, fail_on="bs64_ep1_sqrt_t0.5"),
    )
  assert calls == ["bs64_ep1_linear_t0.5", "bs64_ep1_sqrt_t0.5"]
  mtime = os.path.getmtime(tmp_path / "bs64_ep1_linear_t0.5" / "results.json")

  calls.clear()
  status = sweep.run_all(c, str(tmp_path), num_devices=1, train_fn=fake_train)
  assert calls == ["bs64_ep1_sqrt_t0.5", "bs2048_ep1_sqrt_t0.5"]  # finished runs not repeated
  assert set(status.values()) == {"finished"} and len(status) == 4
  assert os.path.getmtime(tmp_path / "bs64_ep1_linear_t0.5" / "results.json") == mtime
  assert json.loads((pre / "results.json").read_text())["knn_top1"] == 0.5
  run_meta = json.loads((tmp_path / "bs2048_ep1_sqrt_t0.5" / "sweep_run.json").read_text())
  assert run_meta["grad_cache_chunk"] == 512 and run_meta["lr_scaling"] == "sqrt"

  calls.clear()
  sweep.run_all(c, str(tmp_path), num_devices=1, train_fn=fake_train)
  assert calls == []


def test_failed_run_does_not_stop_the_others(tmp_path):
  c = _tiny_sweep_config()
  done = []

  def train_fn(rc, workdir):
    if rc.batch_size == 64 and rc.optim.lr_scaling == "linear":
      raise ValueError("boom")
    done.append(os.path.basename(workdir))
    with open(os.path.join(workdir, "results.json"), "w") as f:
      json.dump({"train_time_s": 1.0}, f)

  with pytest.raises(RuntimeError, match="1 of 4 sweep runs failed"):
    sweep.run_all(c, str(tmp_path), num_devices=1, train_fn=train_fn)
  assert len(done) == 3
  status = json.loads((tmp_path / "sweep_status.json").read_text())
  assert status["bs64_ep1_linear_t0.5"].startswith("failed")
