"""Preemption wherever a run spends time: SIGTERM during the kNN evaluation of a pre-training run,
during a linear evaluation and during fine-tuning saves what there is and exits within seconds;
the next start resumes (real processes, real signals)."""

import os
import re
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from contrastive_jax import preemption, pretrained, sharding
from contrastive_jax.data import eval_views
from contrastive_jax.protocols import evaluate, finetune
from tests.test_eval_run import _eval_config, pretrain_dir  # noqa: F401  (a module fixture)
from tests.test_fault_tolerance import REPO, finish, launch, subprocess_env


def _start(args: list[str], env: dict) -> subprocess.Popen:
  return subprocess.Popen(
    [sys.executable, "-m", "contrastive_jax.main", *args],
    cwd=REPO,
    env=env,
    stdout=subprocess.PIPE,
    stderr=subprocess.STDOUT,
    text=True,
  )


def _sigterm_after(proc: subprocess.Popen, pattern: str, delay: float, timeout: float = 900):
  """Reads the output until `pattern`, waits `delay` s, sends SIGTERM; returns (rc, output,
  seconds from the signal to the exit)."""
  lines, deadline = [], time.time() + timeout
  while time.time() < deadline:
    line = proc.stdout.readline()
    if not line:
      break
    lines.append(line)
    if re.search(pattern, line):
      break
  else:
    proc.kill()
  assert proc.poll() is None, "".join(lines)[-3000:]
  time.sleep(delay)
  t0 = time.time()
  proc.send_signal(signal.SIGTERM)
  rest, _ = proc.communicate(timeout=300)
  return proc.returncode, "".join(lines) + rest, time.time() - t0


@pytest.mark.slow
def test_sigterm_during_knn_saves_and_exits_then_resume_evaluates(tmp_path):
  """The final kNN over a 16k-image bank takes far longer than the few seconds the run gets."""
  workdir = str(tmp_path / "w")
  env = subprocess_env()
  big = (
    "--config.total_steps=2",
    "--config.synthetic_train_size=16384",
    "--config.knn.batch_size=32",
  )
  proc = launch(workdir, env, *big)
  rc, out, exit_s = _sigterm_after(proc, r"step 2/2", delay=2.0)
  assert rc == 0, out[-3000:]
  assert "Preempted during an evaluation at step 2/2; checkpoint saved to" in out, out[-3000:]
  assert "kNN (k=" not in out  # the evaluation did not run to its end
  # Seconds on a quiet machine; the bound is loose because a signal that lands just after the first
  # batch waits for the embed step's compilation (not interruptible), ~30 s on 2 loaded cores.
  assert exit_s < 90, exit_s
  assert os.path.isdir(os.path.join(workdir, "checkpoints", "2"))
  assert not os.path.exists(os.path.join(workdir, "results.json"))
  rc, out = finish(launch(workdir, env, *big, "--config.knn.bank_split=test"))
  assert rc == 0, out[-3000:]
  assert re.search(r"Resumed from \S+/checkpoints/2 at step 2\.", out), out[-3000:]
  assert "kNN (k=20) top-1" in out and os.path.exists(os.path.join(workdir, "results.json"))
  print(f"exited {exit_s:.1f}s after SIGTERM during kNN")


# ----------------------------------------------------------------------------- linear eval, finetune


@pytest.mark.slow
def test_sigterm_during_linear_eval_keeps_features_and_resumes(pretrain_dir, tmp_path, monkeypatch):  # noqa: F811
  """A real SIGTERM while the test split's features are computed: the run returns preempted with
  the train features saved; the next run reuses them and ends with the uninterrupted numbers."""
  original = eval_views.split_batches

  def planted(data_cfg, split, batch_size):
    for i, batch in enumerate(original(data_cfg, split, batch_size)):
      if split == data_cfg.eval_split and i == 1:
        os.kill(os.getpid(), signal.SIGTERM)
      yield batch

  cfg = _eval_config("linear_eval", pretrain_dir, plots=False, retrieval=False)
  cfg.eval_batch_size = 16  # 4 batches of the 64 test images: the signal lands inside the pass
  w2 = tmp_path / "lin"
  monkeypatch.setattr(eval_views, "split_batches", planted)
  res = evaluate.evaluate(cfg, str(w2))
  assert res["preempted"]
  assert (w2 / "features_train.npz").exists() and not (w2 / "features_test.npz").exists()
  assert not (w2 / "results.json").exists()
  monkeypatch.setattr(eval_views, "split_batches", original)
  resumed = evaluate.evaluate(cfg, str(w2))
  fresh = evaluate.evaluate(cfg, str(tmp_path / "lin_fresh"))
  for k in ("knn_top1", "linear_top1", "linear_val_top1", "feature_dim"):
    assert resumed[k] == fresh[k], k


@pytest.mark.slow
def test_sigterm_during_features_probe_stops_between_epochs(pretrain_dir, tmp_path, monkeypatch):  # noqa: F811
  """'features' probe: a real SIGTERM during its 2nd epoch stops it before the 3rd (no results.json,
  the features kept); the next run redoes the probe on the saved features and ends with the
  uninterrupted numbers."""
  from contrastive_jax.evaluators import linear  # pylint: disable=g-import-not-at-top

  original, calls = linear._fit_epoch, []  # pylint: disable=protected-access

  def planted(*args, **kwargs):
    calls.append(1)
    if len(calls) == 2:
      os.kill(os.getpid(), signal.SIGTERM)
    return original(*args, **kwargs)

  cfg = _eval_config("linear_eval", pretrain_dir, plots=False, retrieval=False)
  cfg.linear.epochs = 4
  w2 = tmp_path / "feat"
  monkeypatch.setattr(linear, "_fit_epoch", planted)
  res = evaluate.evaluate(cfg, str(w2))
  assert res["preempted"] and len(calls) == 2  # epochs 3, 4 and the refit never ran
  assert (w2 / "features_train.npz").exists() and not (w2 / "results.json").exists()
  monkeypatch.setattr(linear, "_fit_epoch", original)
  resumed = evaluate.evaluate(cfg, str(w2))
  fresh = evaluate.evaluate(cfg, str(tmp_path / "feat_fresh"))
  for k in ("linear_top1", "linear_val_top1", "linear_best_lr"):
    assert resumed[k] == fresh[k], (k, resumed[k], fresh[k])


@pytest.mark.slow
def test_sigterm_during_augmented_probe_saves_its_state_and_resumes_exactly(
  pretrain_dir,  # noqa: F811
  tmp_path,
  monkeypatch,
):
  """'augmented' probe (the encoder runs on every step): a real SIGTERM at its 3rd batch saves the
  heads and optimiser states after step 2 in W2/linear_probe_state.npz; the next run resumes at
  step 3 (batches skipped, not replayed) and ends with exactly the uninterrupted numbers, then
  removes the state file."""
  original = eval_views.augmented_array_batches
  seen = []

  def planted(*args, **kwargs):
    seen.append(kwargs.get("skip_batches", 0))
    for i, batch in enumerate(original(*args, **kwargs)):
      if not kwargs.get("skip_batches") and i == 2:
        os.kill(os.getpid(), signal.SIGTERM)
      yield batch

  over = {"linear.mode": "augmented", "linear.epochs": 2, "linear.batch_size": 32}
  cfg = _eval_config("linear_eval", pretrain_dir, plots=False, retrieval=False, **over)
  w2 = tmp_path / "aug"
  monkeypatch.setattr(eval_views, "augmented_array_batches", planted)
  res = evaluate.evaluate(cfg, str(w2))
  assert res["preempted"] and (w2 / "linear_probe_state.npz").exists()
  with np.load(w2 / "linear_probe_state.npz") as saved:
    assert int(saved["step"]) == 2
  resumed = evaluate.evaluate(cfg, str(w2))
  assert seen == [0, 2]  # the resumed run started at the 3rd batch
  assert not (w2 / "linear_probe_state.npz").exists()
  monkeypatch.setattr(eval_views, "augmented_array_batches", original)
  fresh = evaluate.evaluate(cfg, str(tmp_path / "aug_fresh"))
  for k in ("linear_top1", "linear_top5", "linear_val_top1", "linear_best_lr"):
    assert resumed[k] == fresh[k], (k, resumed[k], fresh[k])


@pytest.mark.slow
def test_sigterm_during_finetune_saves_and_resumes_exactly(pretrain_dir, tmp_path, monkeypatch):  # noqa: F811
  """SIGTERM after fine-tune step 3 of 6 (the test hook sends a real signal): checkpoint 3 in W2,
  preempted; the next run resumes there and ends with the parameters of an uninterrupted run."""
  cfg = _eval_config("finetune", pretrain_dir, label_fraction=0.5)
  cfg.finetune.update(steps=6, checkpoint_every_steps=2)
  mesh = sharding.make_mesh()
  loaded = pretrained.load(pretrain_dir, mesh=mesh)
  data_cfg = eval_views.data_config(cfg, loaded.config)

  def run(w2):
    w2.mkdir(exist_ok=True)  # evaluate() makes W2; finetune() is called directly here
    return finetune.finetune(cfg, loaded, data_cfg, 10, mesh, str(w2), return_state=True)

  monkeypatch.setenv(preemption.TEST_SIGTERM_ENV, "3")
  res, state, _ = run(tmp_path / "ft")
  assert res["preempted"] and res["finetune_steps"] == 3 and state is None
  assert sorted(os.listdir(tmp_path / "ft" / "checkpoints")) == ["2", "3"]
  monkeypatch.delenv(preemption.TEST_SIGTERM_ENV)
  res, state, _ = run(tmp_path / "ft")
  assert res["finetune_50pct_steps"] == 6
  _, fresh, _ = run(tmp_path / "ft_fresh")
  for a, b in zip(jax.tree.leaves(state.params), jax.tree.leaves(fresh.params), strict=True):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-7)
