"""Train-step throughput (images/s) on synthetic images: no TensorFlow or TFDS needed.

  python benchmarks/train_step.py                      # CPU preset model and ResNet-18, batch 256
  python benchmarks/train_step.py --models=resnet18 --batch_size=1024 --steps=20 --out=bench.json

  python benchmarks/train_step.py --compare-torch      # + the PyTorch peer, interleaved

Counts images (pairs of views count as one image, as the paper's batch size does). The step is the
real one (contrastive_jax.step.make_train_step: jit over the mesh of all local devices, shard_map,
synchronised BN, global NT-Xent, optimiser update); timings exclude compilation. On CPU it splits
the host into as many devices as ./run.sh does (contrastive_jax/cpu_devices.py: one per core, at
most 8); CONTRASTIVE_JAX_CPU_DEVICES=1 times the single-device step.

--compare-torch times benchmarks/torch_peer.py (the same model, projector, probe, NT-Xent and LARS
in PyTorch; torch is not a project dependency: see that file for a throwaway install) step for
step interleaved with the JAX step, so the ratio jax_over_torch holds on a loaded machine too.
"""

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from contrastive_jax import cpu_convolutions, cpu_devices  # noqa: E402

# The same CPU device count as ./run.sh (one device per core; CONTRASTIVE_JAX_CPU_DEVICES=1 for one).
cpu_devices.configure()
# And the same convolution setting (cpu_convolutions.py); an XLA_FLAGS naming the option wins, e.g.
# --xla_cpu_experimental_ynn_fusion_type=individual_convolution for jaxlib's own default.
cpu_convolutions.configure()

import jax  # noqa: E402
import numpy as np  # noqa: E402

from contrastive_jax import methods, optim, sharding  # noqa: E402
from contrastive_jax import step as step_lib  # noqa: E402
from contrastive_jax.config_lib import base  # noqa: E402

TEMPERATURE = 0.2
HEADS = {"resnet_tiny": ((256,), 64)}  # projector (hidden_dims, out_dim); others: base_config's


def build(
  model: str,
  batch_size: int,
  image_size: int = 32,
  dtype: str = "float32",
  optimizer: str = "lars",
  tile: int | None = None,
):
  """The real jitted step on fixed synthetic data: (run() -> metrics, info dict)."""
  c = base.base_config()
  c.model.name, c.model.dtype = model, dtype
  if model == "resnet_tiny":
    c.head.hidden_dims, c.head.out_dim = HEADS["resnet_tiny"]
  c.batch_size = batch_size
  c.optim.name = optimizer
  c.method_args.temperature = TEMPERATURE
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
  holder = {"state": state}

  def run():
    holder["state"], m = step(holder["state"], batch)  # donated: keep the new state
    return jax.block_until_ready(m)

  t0 = time.perf_counter()
  run()
  compile_s = time.perf_counter() - t0
  n_params = sum(x.size for x in jax.tree.leaves(holder["state"].params["encoder"]))
  info = {
    "model": model,
    "encoder_params": int(n_params),
    "batch_size": batch_size,
    "image_size": image_size,
    "dtype": dtype,
    "devices": jax.device_count(),
    "platform": jax.devices()[0].platform,
    "compile_s": compile_s,
  }
  return run, info


def _timed(fn) -> float:
  t0 = time.perf_counter()
  fn()
  return time.perf_counter() - t0


def bench(model, batch_size, steps, image_size=32, dtype="float32", compare_torch=False) -> dict:
  """Median step time of the JAX step; with compare_torch, the PyTorch peer's steps interleaved
  with it (jax, torch, jax, torch, ...) so both see the same machine load."""
  run, row = build(model, batch_size, image_size, dtype)
  torch_step = None
  if compare_torch:
    import torch

    from benchmarks import torch_peer

    torch.set_num_threads(os.cpu_count())
    hidden, out = HEADS.get(model, ((2048,), 128))
    torch_step = torch_peer.make_step(model, batch_size, image_size, hidden, out, TEMPERATURE)
    torch_step()  # warm-up (oneDNN primitive creation)
    row["torch"] = torch.__version__
  times, torch_times = [], []
  for _ in range(steps):
    times.append(_timed(run))
    if torch_step:
      torch_times.append(_timed(torch_step))
  med = float(np.median(times))
  m = run()
  row.update(step_s_median=med, images_per_sec=batch_size / med, loss=float(m["loss"]))
  if torch_step:
    t_med = float(np.median(torch_times))
    row.update(torch_step_s_median=t_med, torch_images_per_sec=batch_size / t_med)
    row["jax_over_torch"] = t_med / med  # > 1: JAX is faster
  row["loadavg"] = os.getloadavg()
  row["xla_flags"] = os.environ.get("XLA_FLAGS", "")
  return row


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
    "--compare-torch",
    "--compare_torch",
    dest="compare_torch",
    action="store_true",
    help="time the PyTorch peer (benchmarks/torch_peer.py) interleaved in the same run",
  )
  p.add_argument(
    "--out", default=os.path.join(os.path.dirname(__file__), "results", "train_step.json")
  )
  a = p.parse_args()
  rows = []
  load_before = os.getloadavg()[0]  # the 1-minute load before any work: > 0.5 is not a quiet box
  for m in a.models.split(","):
    rows.append(bench(m, a.batch_size, a.steps, a.image_size, a.dtype, a.compare_torch))
    rows[-1].update(load_average_1m_before=load_before, cpus=os.cpu_count(), jax=jax.__version__)
  print(f"# load average {os.getloadavg()}, XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}")
  print(
    f"{'model':<12} {'params':>10} {'batch':>6} {'devices':>8} {'step (s)':>9} {'images/s':>9}"
    + (f" {'torch img/s':>11} {'jax/torch':>9}" if a.compare_torch else "")
  )
  for r in rows:
    line = (
      f"{r['model']:<12} {r['encoder_params']:>10,} {r['batch_size']:>6} "
      f"{r['devices']:>4} {r['platform']:<3} {r['step_s_median']:>9.3f} {r['images_per_sec']:>9.1f}"
    )
    if "torch_images_per_sec" in r:
      line += f" {r['torch_images_per_sec']:>11.1f} {r['jax_over_torch']:>9.2f}"
    print(line)
  os.makedirs(os.path.dirname(a.out), exist_ok=True)
  with open(a.out, "w", encoding="utf-8") as f:
    json.dump(rows, f, indent=2)


if __name__ == "__main__":
  main()
