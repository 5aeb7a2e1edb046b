"""Train-step throughput (images/s) on synthetic images: no TensorFlow or TFDS needed.

  python benchmarks/train_step.py                      # CPU preset model and ResNet-18, batch 256
  python benchmarks/train_step.py --models=resnet18 --batch_size=1024 --steps=20 --out=bench.json

Counts images (pairs of views count as one image, as the paper's batch size does). The step is the
real one (contrastive_jax.step.make_train_step: jit over the mesh of all local devices, shard_map,
synchronised BN, global NT-Xent, optimiser update); timings exclude compilation.
"""

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import jax  # noqa: E402
import numpy as np  # noqa: E402

from contrastive_jax import methods, optim, sharding  # noqa: E402
from contrastive_jax import step as step_lib  # noqa: E402
from contrastive_jax.config_lib import base  # noqa: E402


def bench(
  model: str,
  batch_size: int,
  steps: int,
  image_size: int = 32,
  dtype: str = "float32",
  optimizer: str = "lars",
  tile: int | None = None,
) -> dict:
  c = base.base_config()
  c.model.name, c.model.dtype = model, dtype
  if model == "resnet_tiny":
    c.head.hidden_dims, c.head.out_dim = (256,), 64
  c.batch_size = batch_size
  c.optim.name = optimizer
  c.method_args.temperature = 0.2
  c.method_args.loss_tile_size = tile
  mesh = sharding.make_mesh()
  method = methods.get_method(c, 10)
  tx, schedule = optim.create_optimizer(
    c.optim, batch_size=batch_size, total_steps=1000, steps_per_epoch=100
  )
  state = step_lib.create_state(method, tx, c, mesh, (image_size, image_size, 3))
  step = step_lib.make_train_step(method, tx, schedule, mesh)
  rng = np.random.default_rng(0)
  host = {
    "view1": rng.uniform(size=(batch_size, image_size, image_size, 3)).astype(np.float32),
    "view2": rng.uniform(size=(batch_size, image_size, image_size, 3)).astype(np.float32),
    "label": rng.integers(0, 10, size=(batch_size,)).astype(np.int32),
  }
  batch = sharding.global_batch(host, mesh)
  t0 = time.perf_counter()
  state, m = step(state, batch)
  jax.block_until_ready(m)
  compile_s = time.perf_counter() - t0
  times = []
  for _ in range(steps):
    t0 = time.perf_counter()
    state, m = step(state, batch)
    jax.block_until_ready(m)
    times.append(time.perf_counter() - t0)
  med = float(np.median(times))
  n_params = sum(x.size for x in jax.tree.leaves(state.params["encoder"]))
  return {
    "model": model,
    "encoder_params": int(n_params),
    "batch_size": batch_size,
    "image_size": image_size,
    "dtype": dtype,
    "devices": jax.device_count(),
    "platform": jax.devices()[0].platform,
    "step_s_median": med,
    "images_per_sec": batch_size / med,
    "compile_s": compile_s,
    "loss": float(m["loss"]),
  }


def main():
  p = argparse.ArgumentParser(
    description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
  )
  p.add_argument("--models", default="resnet_tiny,resnet18")
  p.add_argument("--batch_size", type=int, default=256)
  p.add_argument("--steps", type=int, default=5)
  p.add_argument("--image_size", type=int, default=32)
  p.add_argument("--dtype", default="float32")
  p.add_argument(
    "--out", default=os.path.join(os.path.dirname(__file__), "results", "train_step.json")
  )
  a = p.parse_args()
  rows = [bench(m, a.batch_size, a.steps, a.image_size, a.dtype) for m in a.models.split(",")]
  print(f"{'model':<12} {'params':>10} {'batch':>6} {'devices':>8} {'step (s)':>9} {'images/s':>9}")
  for r in rows:
    print(
      f"{r['model']:<12} {r['encoder_params']:>10,} {r['batch_size']:>6} "
      f"{r['devices']:>4} {r['platform']:<3} {r['step_s_median']:>9.3f} {r['images_per_sec']:>9.1f}"
    )
  os.makedirs(os.path.dirname(a.out), exist_ok=True)
  with open(a.out, "w", encoding="utf-8") as f:
    json.dump(rows, f, indent=2)


if __name__ == "__main__":
  main()
