"""Throughput of the pre-training input pipeline (pairs of augmented views per second, per process).

    .venv/bin/python benchmarks/input_pipeline.py [--data_dir DIR] [--out benchmarks/results/input_pipeline.json]

Cases: CIFAR-10 from the TFDS data_dir (synthetic 32x32 if it is not there) with the CPU default
view (32x32, colour strength 0.5, no blur), in memory and streaming; and the ImageNet-style view
(224x224, colour 1.0, blur 0.5, solarize on view 2) on synthetic images. Prints a table and writes
JSON. Numbers depend on the host's free cores: run it on an idle machine to compare.

Large images (benchmarks/large_images.py): a folder of generated 500x375 JPEGs (ImageNet-sized,
made under /tmp on first use), decoded once per image for both 224x224 views, parallel map
(AUTOTUNE): the project's augmentation ops beside the official google-research/simclr tf2
preprocess_for_train (benchmarks/simclr_tf2_preprocess.py) on the same files and graph shape, and
the project's streaming folder reader end to end. pairs/s per core = pairs/s / os.cpu_count().
"""

import argparse
import json
import os
import platform
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import ml_collections  # noqa: E402

from benchmarks import large_images  # noqa: E402
from contrastive_jax.config_lib import augment as views  # noqa: E402
from contrastive_jax.data import catalog, pipeline  # noqa: E402


def _config(dataset, data_dir, image_size, color, blur, cache, solarize2=0.0):
  aug = views.view(image_size, color_strength=color, blur_prob=blur)
  aug2 = None
  if solarize2:
    aug2 = views.view(image_size, color_strength=color, blur_prob=0.1)
    aug2.solarize_prob = solarize2
  return ml_collections.ConfigDict(
    dict(
      dataset=dataset,
      data_dir=data_dir,
      train_split="train",
      image_size=image_size,
      shuffle_buffer=10_000,
      aug=aug,
      aug2=aug2,
      cache=cache,
      seed=0,
      synthetic_train_size=4096,
      synthetic_test_size=256,
    )
  )


def measure(cfg, batch_size, steps, warmup):
  t0 = time.perf_counter()
  it = pipeline.pretrain_iterator(cfg, batch_size=batch_size, process_index=0, process_count=1)
  next(it)
  startup = time.perf_counter() - t0
  for _ in range(warmup):
    next(it)
  t1 = time.perf_counter()
  for _ in range(steps):
    batch = next(it)
  elapsed = time.perf_counter() - t1
  assert batch["view1"].shape[0] == batch_size
  return {
    "startup_s": round(startup, 2),
    "steps": steps,
    "batch_size": batch_size,
    "pairs_per_s": round(steps * batch_size / elapsed, 1),
    "batches_per_s": round(steps / elapsed, 2),
  }


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--data_dir", default=None)
  parser.add_argument(
    "--out",
    default=os.path.join(
      os.path.dirname(os.path.abspath(__file__)), "results", "input_pipeline.json"
    ),
  )
  parser.add_argument("--steps", type=int, default=20)
  parser.add_argument("--warmup", type=int, default=3)
  parser.add_argument("--batch_size", type=int, default=256)
  parser.add_argument(
    "--large_dir",
    default="/tmp/contrastive_jax_jpeg500",
    help="folder dataset of generated 500x375 JPEGs (made on first use; never commit it)",
  )
  parser.add_argument("--large_images", type=int, default=2000, help="JPEGs to generate")
  parser.add_argument("--skip_small", action="store_true", help="only the large-image cases")
  args = parser.parse_args()

  data_dir = catalog.resolve_data_dir(args.data_dir)
  try:
    catalog.dataset_info("cifar10", data_dir)
    small = "cifar10"
  except (ValueError, ImportError) as e:
    print(f"CIFAR-10 unavailable ({str(e)[:80]}...); using the synthetic dataset.")
    small = "synthetic"
  cases = [
    (f"{small} 32px c0.5 in-memory", _config(small, data_dir, 32, 0.5, 0.0, None), args.batch_size),
    (
      f"{small} 32px c0.5 streaming",
      _config(small, data_dir, 32, 0.5, 0.0, False),
      args.batch_size,
    ),
    (
      "synthetic 224px c1.0 blur0.5 (BYOL v2: solarize)",
      _config("synthetic", None, 224, 1.0, 0.5, None, 0.2),
      64,
    ),
  ]
  if small == "synthetic":
    cases.pop(1)  # The synthetic dataset is always in memory.
  if args.skip_small:
    cases = []
  results = []
  print(f"host: {platform.node()} cpus={os.cpu_count()} loadavg={os.getloadavg()}")
  print(f"{'case':52s} {'batch':>5s} {'pairs/s':>9s} {'startup s':>9s}")
  for r in large_images.run_cases(args.large_dir, args.large_images, steps=max(args.steps, 10)):
    results.append(r)
    print(
      f"{r['case']:52s} {r['batch_size']:5d} {r['pairs_per_s']:9.1f} {r['startup_s']:9.2f}  "
      f"({r['pairs_per_s_per_core']:.1f} pairs/s/core, {r['pairs_per_cpu_s']:.1f} per CPU-s)",
      flush=True,
    )
  for name, cfg, bs in cases:
    r = measure(
      cfg,
      bs,
      max(args.steps * 256 // bs // 4, 5) if bs < args.batch_size else args.steps,
      args.warmup,
    )
    r["case"] = name
    results.append(r)
    print(f"{name:52s} {bs:5d} {r['pairs_per_s']:9.1f} {r['startup_s']:9.2f}", flush=True)
  os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
  with open(args.out, "w") as f:
    json.dump(
      {
        "host": platform.node(),
        "cpu_count": os.cpu_count(),
        "loadavg": os.getloadavg(),
        "results": results,
      },
      f,
      indent=1,
    )
  print(f"wrote {args.out}")


if __name__ == "__main__":
  main()
