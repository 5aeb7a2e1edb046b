"""The collector: table (Markdown, CSV) and figure from a few fake results.json files."""

import csv
import json
import os
import subprocess
import sys

from contrastive_jax.batch_scaling import collect


def _fake_run(root, name, bs, ep, rule, top1, *, dataset="cifar10", model="resnet_tiny", done=True):
  d = root / name
  d.mkdir()
  (d / "sweep_run.json").write_text(
    json.dumps(
      {
        "name": name,
        "batch_size": bs,
        "epochs": ep,
        "lr_scaling": rule,
        "temperature": 0.5,
        "optim.base_lr": 0.3 if rule == "linear" else 0.075,
        "grad_cache_chunk": 512 if bs > 512 else 0,
        "dataset": dataset,
        "model": model,
      }
    )
  )
  res = {"knn_top1": top1, "steps": 10}
  if done:
    res["train_time_s"] = 12.0
  (d / "results.json").write_text(json.dumps(res))


def test_collect_table_and_figure(tmp_path):
  sw = tmp_path / "sweep"
  sw.mkdir()
  _fake_run(sw, "bs64_ep2_linear_t0.5", 64, 2.0, "linear", 0.31)
  _fake_run(sw, "bs2048_ep2_linear_t0.5", 2048, 2.0, "linear", 0.35)
  _fake_run(sw, "bs64_ep2_sqrt_t0.5", 64, 2.0, "sqrt", 0.33)
  _fake_run(sw, "bs2048_ep2_sqrt_t0.5", 2048, 2.0, "sqrt", 0.2, done=False)
  res = collect.collect(str(sw), str(tmp_path / "out" / "bs"))
  md = open(res["md"]).read()
  assert "| 64 | 31.0 / 33.0 |" in md and "| 2048 | 35.0 / - |" in md
  assert "(unfinished)" in md and "Published" not in md  # CIFAR: no paper points
  with open(res["csv"]) as f:
    rows = list(csv.DictReader(f))
  assert len(rows) == 4 and {r["lr_scaling"] for r in rows} == {"linear", "sqrt"}
  assert os.path.getsize(res["png"]) > 10_000
  assert open(res["png"], "rb").read(8) == b"\x89PNG\r\n\x1a\n"


def test_paper_points_only_for_imagenet(tmp_path):
  sw = tmp_path / "sweep"
  sw.mkdir()
  _fake_run(
    sw,
    "bs256_ep100_linear_t0.1",
    256,
    100.0,
    "linear",
    0.57,
    dataset="imagenet2012",
    model="resnet50",
  )
  res = collect.collect(str(sw))
  md = open(res["md"]).read()
  assert "Table B.1" in md and "57.5 / 62.8" in md
  assert collect.paper_points("sqrt")[100][8192] == 64.8
  assert os.path.exists(sw / "batch_scaling.png")


def test_command_line_and_no_flags_at_import(tmp_path):
  """`python -m contrastive_jax.batch_scaling` writes the table; importing collect defines no flags."""
  sw = tmp_path / "sweep"
  sw.mkdir()
  _fake_run(sw, "bs64_ep2_linear_t0.5", 64, 2.0, "linear", 0.31)
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  env = {**os.environ, "PYTHONPATH": root}
  probe = (
    "from absl import flags; from contrastive_jax.batch_scaling import collect, sweep; "
    "assert 'sweep_dir' not in flags.FLAGS and 'out' not in flags.FLAGS"
  )
  subprocess.run([sys.executable, "-c", probe], check=True, env=env, cwd=root)
  out = subprocess.run(
    [
      sys.executable,
      "-m",
      "contrastive_jax.batch_scaling",
      f"--sweep_dir={sw}",
      f"--out={tmp_path / 'table'}",
    ],
    check=True,
    env=env,
    cwd=root,
    capture_output=True,
    text=True,
  ).stdout
  assert "| 64 | 31.0 / - |" in out and os.path.exists(tmp_path / "table.csv")
  bad = subprocess.run(
    [sys.executable, "-m", "contrastive_jax.batch_scaling"], env=env, cwd=root, capture_output=True
  )
  assert bad.returncode != 0 and b"--sweep_dir" in bad.stderr
