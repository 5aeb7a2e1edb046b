"""Accelerator kit: SimCLR train-step throughput, MFU and memory, and the tiled loss at N = 65,536.

    python benchmarks/accelerator.py                      # GPU/TPU: the full cases, ~3-5 min
    python benchmarks/accelerator.py --tiny               # CPU/CI: tiny sizes, well under a minute
    python benchmarks/accelerator.py --peak_tflops=989    # MFU against a given per-device peak

Needs only jax, flax, optax, numpy (plus what contrastive_jax's step imports: orbax, absl are not
touched here): no TensorFlow, no ml_collections. Configs are built from a small attribute dict with
the fields the step reads, the values of config_lib.base.base_config (tests check they agree).

Cases (synthetic images, the real step: contrastive_jax.step.make_train_step over all local
devices, synchronised BN, global NT-Xent, LARS):
- SimCLR ResNet-18, CIFAR stem, 32x32, global batch 512, float32 and bfloat16;
- SimCLR ResNet-50, ImageNet stem, 224x224, batch 128 per device, float32 and bfloat16;
- loss + gradient of NT-Xent, d = 128: tiled at N = 65,536 pairs (float32, bfloat16), and dense
  vs tiled at N = 16,384.

Per case: images/s (pairs of views count as one image), step time (median), compile time, XLA's
cost analysis FLOPs of the compiled per-device program (compiled.cost_analysis()), achieved
TFLOP/s and model FLOPs utilisation (MFU = achieved / peak; the peak comes from --peak_tflops or a
table of known chips, f32 meaning the chip's default f32 matmul mode, e.g. TF32 on NVIDIA), the
compiled program's memory (compiled.memory_analysis()) and the device's peak bytes in use
(device.memory_stats(), GPU/TPU; the process-wide peak so far, cases run smallest first). One
JSON file (--out).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from contrastive_jax import losses, methods, optim, sharding  # noqa: E402
from contrastive_jax import step as step_lib  # noqa: E402

# Dense peak TFLOP/s per device (vendor data sheets), by (substring of device_kind, dtype).
# 'float32' is the default XLA matmul mode for f32 inputs on that chip (TF32 on NVIDIA Ampere+).
PEAK_TFLOPS = {
  ("H200", "bfloat16"): 989.0,
  ("H200", "float32"): 494.7,
  ("H100", "bfloat16"): 989.0,
  ("H100", "float32"): 494.7,
  ("A100", "bfloat16"): 312.0,
  ("A100", "float32"): 156.0,
  ("TPU v4", "bfloat16"): 275.0,
  ("TPU v5 lite", "bfloat16"): 197.0,
  ("TPU v5e", "bfloat16"): 197.0,
  ("TPU v5p", "bfloat16"): 459.0,
  ("TPU v6", "bfloat16"): 918.0,
}


class Config(dict):
  """Attribute-access dict with .get: the subset of ConfigDict the step builder reads."""

  def __getattr__(self, name):
    try:
      return self[name]
    except KeyError as e:
      raise AttributeError(name) from e

  def __setattr__(self, name, value):
    self[name] = value


def simclr_config(model: str, stem: str, dtype: str, batch_size: int, tile=None) -> Config:
  """SimCLR with the values of config_lib.base.base_config for every field the step reads."""
  return Config(
    method="simclr",
    seed=0,
    batch_size=batch_size,
    total_steps=-1,
    model=Config(name=model, width=1.0, stem=stem, norm="batch", dtype=dtype),
    head=Config(hidden_dims=(2048,), out_dim=128, last_bn=True, use_bn=True, last_bn_scale=False),
    predictor=Config(
      hidden_dims=(512,), out_dim=128, last_bn=False, use_bn=True, last_bn_scale=False
    ),
    optim=Config(
      name="lars",
      base_lr=0.3,
      lr_scaling="linear",
      weight_decay=1e-6,
      momentum=0.9,
      nesterov=False,
      warmup_epochs=10.0,
      trust_coefficient=0.001,
      end_lr_factor=0.0,
      b1=0.9,
      b2=0.999,
      eps=1e-8,
      grad_clip_norm=0.0,
      clip_lr=False,
      trust_ratio_exclude=("probe",),
      param_groups=Config(),
    ),
    method_args=Config(temperature=0.5, loss_tile_size=tile),
  )


def _flops(compiled) -> float | None:
  ca = compiled.cost_analysis()
  if isinstance(ca, (list, tuple)):  # older jax: one dict per program
    ca = ca[0] if ca else None
  return float(ca["flops"]) if ca and "flops" in ca else None


def _memory(compiled) -> dict:
  out = {}
  try:
    ma = compiled.memory_analysis()
  except Exception:  # noqa: BLE001 (not implemented on some backends)
    ma = None
  for k in ("argument_size_in_bytes", "output_size_in_bytes", "temp_size_in_bytes"):
    v = getattr(ma, k, None)
    if v is not None:
      out[k.replace("_size_in_bytes", "_mb")] = round(v / 2**20, 1)
  stats = jax.local_devices()[0].memory_stats()
  if stats and "peak_bytes_in_use" in stats:
    out["device_peak_mb"] = round(stats["peak_bytes_in_use"] / 2**20, 1)
  return out


def _peak(dtype: str, override: float | None) -> float | None:
  if override:
    return override
  kind = jax.local_devices()[0].device_kind
  for (name, dt), tflops in PEAK_TFLOPS.items():
    if name.lower() in kind.lower() and dt == dtype:
      return tflops
  return None


def _rates(flops, step_s, dtype, peak_override) -> dict:
  peak = _peak(dtype, peak_override)
  achieved = flops / step_s / 1e12 if flops else None
  return dict(
    xla_flops_per_device=flops,
    tflops_per_device=achieved,
    peak_tflops=peak,
    mfu=achieved / peak if achieved and peak else None,
  )


def _fmt(x) -> str:
  return "-" if x is None else f"{x:.3g}"


def _time(run, steps: int) -> list:
  times = []
  for _ in range(steps):
    t0 = time.perf_counter()
    jax.block_until_ready(run())
    times.append(time.perf_counter() - t0)
  return times


def step_case(name, model, stem, image_size, batch_size, dtype, steps, peak_override) -> dict:
  c = simclr_config(model, stem, dtype, batch_size)
  mesh = sharding.make_mesh()
  method = methods.get_method(c, 10)
  tx, schedule = optim.create_optimizer(
    c.optim, batch_size=batch_size, total_steps=1000, steps_per_epoch=100
  )
  state = step_lib.create_state(method, tx, c, mesh, (image_size, image_size, 3))
  train_step = step_lib.make_train_step(method, tx, schedule, mesh)
  rng = np.random.default_rng(0)
  shape = (batch_size, image_size, image_size, 3)
  batch = sharding.global_batch(
    {
      "view1": rng.uniform(size=shape).astype(np.float32),
      "view2": rng.uniform(size=shape).astype(np.float32),
      "label": rng.integers(0, 10, size=(batch_size,)).astype(np.int32),
    },
    mesh,
  )
  t0 = time.perf_counter()
  compiled = train_step.lower(state, batch).compile()
  compile_s = time.perf_counter() - t0
  holder = {"state": state}

  def run():
    holder["state"], m = compiled(holder["state"], batch)  # state is donated: keep the new one
    return m

  jax.block_until_ready(run())  # warm-up (first-run allocations)
  times = _time(run, steps)
  step_s = float(np.median(times))
  metrics = jax.device_get(run())
  return dict(
    case=name,
    model=model,
    stem=stem,
    image_size=image_size,
    dtype=dtype,
    global_batch=batch_size,
    devices=jax.device_count(),
    step_s=round(step_s, 5),
    step_s_min=round(min(times), 5),
    images_per_s=round(batch_size / step_s, 1),
    images_per_s_per_device=round(batch_size / step_s / jax.device_count(), 1),
    compile_s=round(compile_s, 1),
    loss=float(metrics["loss"]),
    **_rates(_flops(compiled), step_s, dtype, peak_override),
    **_memory(compiled),
  )


def loss_case(n, d, tile, dtype, repeats, peak_override) -> dict:
  k1, k2 = jax.random.split(jax.random.PRNGKey(0))
  z1 = jax.random.normal(k1, (n, d), jnp.float32).astype(dtype)
  z2 = jax.random.normal(k2, (n, d), jnp.float32).astype(dtype)
  fn = jax.jit(
    jax.value_and_grad(lambda a, b: losses.nt_xent(a, b, 0.1, tile_size=tile), argnums=(0, 1))
  )
  t0 = time.perf_counter()
  compiled = fn.lower(z1, z2).compile()
  compile_s = time.perf_counter() - t0
  value = float(jax.block_until_ready(compiled(z1, z2))[0])
  times = _time(lambda: compiled(z1, z2), repeats)
  step_s = float(np.median(times))
  # The two unavoidable (2N, 2N, d) products of value + gradient (benchmarks/loss.py's floor).
  floor_flops = 2 * 2 * (2 * n) ** 2 * d
  out = dict(
    case=f"nt_xent_{'tiled' if tile else 'dense'}_n{n}_{dtype}",
    n_pairs=n,
    d=d,
    tile=tile,
    dtype=dtype,
    time_s=round(step_s, 5),
    compile_s=round(compile_s, 1),
    loss=value,
    matmul_floor_tflops=floor_flops / step_s / 1e12,
    # XLA's cost analysis counts a loop body once, so for the tiled kernel it is far below the
    # work done: MFU here is of the model FLOPs (the two unavoidable products), not XLA's count.
    **_rates(floor_flops, step_s, dtype, peak_override),
    xla_cost_analysis_flops=_flops(compiled),
    **_memory(compiled),
  )
  return out


def plan(tiny: bool, n_dev: int, on_cpu: bool):
  """(step cases, loss cases); tiny: the same code paths at CPU/CI sizes."""
  if tiny:
    # Compilation dominates a tiny run (~20 s of CPU per step program): one step case, on the
    # paths the CPU tests do not otherwise take (ImageNet stem, bfloat16), and two small losses.
    steps = [("simclr_resnet50_224", "resnet_micro", "imagenet", 32, 2 * n_dev, "bfloat16")]
    return steps, [(128, 32, None, "float32"), (256, 32, 64, "bfloat16")]
  steps = [
    ("simclr_resnet18_cifar", "resnet18", "cifar", 32, 512, dt) for dt in ("float32", "bfloat16")
  ] + [
    ("simclr_resnet50_224", "resnet50", "imagenet", 224, 128 * n_dev, dt)
    for dt in ("float32", "bfloat16")
  ]
  tile = 512 if on_cpu else 8192  # CPU: cache-sized blocks; accelerators: few, large blocks
  loss = [
    (16384, 128, None, "float32"),
    (16384, 128, tile, "float32"),
    (65536, 128, tile, "float32"),
    (65536, 128, tile, "bfloat16"),
  ]
  return steps, loss


def main(argv=None):
  p = argparse.ArgumentParser(
    description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
  )
  p.add_argument("--tiny", action="store_true", help="tiny sizes (CPU, CI; under a minute)")
  p.add_argument("--steps", type=int, default=None, help="timed steps per case (10; tiny 2)")
  p.add_argument("--peak_tflops", type=float, default=None, help="per-device peak for MFU")
  p.add_argument("--skip_loss", action="store_true")
  p.add_argument(
    "--out", default=os.path.join(os.path.dirname(__file__), "results", "accelerator.json")
  )
  a = p.parse_args(argv)
  if a.tiny:
    # Parameter init through threefry compiles ~3x slower on XLA:CPU than through the RBG
    # generator (measured: 19 s vs 6 s of CPU for create_state of resnet_micro); the tiny run only
    # checks that everything runs, so it takes the faster one. Full runs keep jax's default.
    jax.config.update("jax_default_prng_impl", "unsafe_rbg")
  steps_n = a.steps or (2 if a.tiny else 10)
  dev = jax.local_devices()[0]
  on_cpu = dev.platform == "cpu"
  step_cases, loss_cases = plan(a.tiny, jax.device_count(), on_cpu)
  header = dict(
    jax=jax.__version__,
    backend=jax.default_backend(),
    device_kind=dev.device_kind,
    devices=jax.device_count(),
    tiny=a.tiny,
    loadavg=os.getloadavg(),
    date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
  )
  print(json.dumps(header), flush=True)
  t_start = time.perf_counter()
  results = []
  for case in step_cases:
    r = step_case(*case, steps=steps_n, peak_override=a.peak_tflops)
    results.append(r)
    print(
      f"{r['case']:<24} {r['dtype']:<9} batch {r['global_batch']:>5} {r['images_per_s']:>10.1f} "
      f"img/s  step {r['step_s'] * 1e3:8.1f} ms  {_fmt(r['tflops_per_device'])} TFLOP/s/device  "
      f"MFU {_fmt(r['mfu'])}  peak mem {r.get('device_peak_mb')} MB",
      flush=True,
    )
  if not a.skip_loss:
    for n, d, tile, dtype in loss_cases:
      r = loss_case(n, d, tile, dtype, max(steps_n // 2, 2), a.peak_tflops)
      results.append(r)
      print(
        f"{r['case']:<32} {r['time_s'] * 1e3:9.1f} ms  {_fmt(r['matmul_floor_tflops'])} TFLOP/s "
        f"(model FLOPs)  MFU {_fmt(r['mfu'])}  peak mem {r.get('device_peak_mb')} MB",
        flush=True,
      )
  header["total_s"] = round(time.perf_counter() - t_start, 1)
  os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
  with open(a.out, "w", encoding="utf-8") as f:
    json.dump(dict(header, results=results), f, indent=1)
  print(f"# wrote {a.out} ({header['total_s']} s)")


if __name__ == "__main__":
  main()
