"""benchmarks/accelerator.py: runs end to end at --tiny sizes without TensorFlow or ml_collections,
writes sane JSON, and its dependency-free config agrees with config_lib.base.base_config."""

import json
import math
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "benchmarks", "accelerator.py")

# Make the GPU machine's environment: these imports fail inside the subprocess.
_BLOCKED = ("tensorflow", "tensorflow_datasets", "ml_collections")
_RUNNER = (
  "import runpy, sys\n"
  f"for m in {_BLOCKED!r}: sys.modules[m] = None\n"
  "sys.argv = [sys.argv[1]] + sys.argv[2:]\n"
  "runpy.run_path(sys.argv[0], run_name='__main__')\n"
)


@pytest.fixture(scope="module")
def tiny_result(tmp_path_factory):
  out = tmp_path_factory.mktemp("acc") / "accelerator.json"
  proc = subprocess.run(
    [sys.executable, "-c", _RUNNER, SCRIPT, "--tiny", f"--out={out}"],
    capture_output=True,
    text=True,
    timeout=600,
    cwd=ROOT,
  )
  assert proc.returncode == 0, proc.stderr[-3000:]
  return json.loads(out.read_text())


def test_tiny_run_json(tiny_result):
  r = tiny_result
  assert r["tiny"] is True and r["backend"] == "cpu" and r["devices"] >= 1
  steps = [x for x in r["results"] if x["case"].startswith("simclr_")]
  loss = [x for x in r["results"] if x["case"].startswith("nt_xent_")]
  assert steps and loss
  for x in steps:
    assert x["images_per_s"] > 0 and x["step_s"] > 0 and x["compile_s"] > 0
    assert math.isclose(x["images_per_s"], x["global_batch"] / x["step_s"], rel_tol=0.02)
    assert x["global_batch"] % x["devices"] == 0
    assert math.isfinite(x["loss"]) and x["loss"] > 0
    assert x["xla_flops_per_device"] > 0 and x["tflops_per_device"] > 0
    assert x["temp_mb"] >= 0 and x["argument_mb"] > 0
    assert x["mfu"] is None  # no peak is known for a CPU (and none was passed)
  assert {x["dtype"] for x in r["results"]} == {"float32", "bfloat16"}
  for x in loss:
    assert x["time_s"] > 0 and x["matmul_floor_tflops"] > 0 and math.isfinite(x["loss"])
    # Random views, tau 0.1: logits ~ N(0, 1 / (d tau^2)) over 2N - 1 candidates, so the loss is
    # about log(2N - 1) + 1 / (2 d tau^2) (the log-normal mean of the partition sum).
    want = math.log(2 * x["n_pairs"] - 1) + 1 / (2 * x["d"] * 0.1**2)
    assert abs(x["loss"] - want) < 0.3, (x["loss"], want)
  assert {x["tile"] is None for x in loss} == {True, False}


def test_config_matches_base_config():
  pytest.importorskip("ml_collections")
  sys.path.insert(0, ROOT)
  from benchmarks import accelerator
  from contrastive_jax.config_lib import base

  want = base.base_config()
  got = accelerator.simclr_config("resnet18", "cifar", "float32", 512)
  for group in ("model", "head", "predictor", "optim"):
    for key, value in got[group].items():
      if key == "param_groups":
        assert not dict(want[group][key])
        continue
      assert want[group][key] == value, f"{group}.{key}"
  assert got.method == want.method and got.seed == want.seed
