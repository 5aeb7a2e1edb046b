"""Large-image input-pipeline cases for benchmarks/input_pipeline.py (ImageNet-sized JPEGs).

`make_folder(root, n)` writes n 500x375 JPEGs (quality 90, smooth random colour fields plus noise,
so they compress like photographs rather than like white noise) as a folder dataset
root/train/class_k/*.jpg, once; it lives under /tmp and is never committed.

Cases, all on the same files, one decode per image shared by both 224x224 views, parallel map
(tf.data AUTOTUNE), colour strength 1.0, no blur; pairs per wall second and per CPU second of the
process (the latter is the per-core rate that a loaded machine distorts least) (the official code blurs per batch in its train
step):
- `official simclr tf2`: decode_jpeg -> convert_image_dtype -> preprocess_for_train twice
  (benchmarks/simclr_tf2_preprocess.py, the authors' code);
- `project ops`: the same graph with the project's augment.simclr_view (stateless seeds);
- `project streaming folder reader`: pipeline.pretrain_iterator on the folder dataset end to end
  (cache=False). Note: the folder reader resizes the shorter side to image_size and centre-crops
  at decode (folder.decode), so its random crops are taken from that 224x224 centre, not from the
  full 500x375 image as the two cases above and TFDS datasets do.
"""

from __future__ import annotations

import os
import time

import ml_collections
import numpy as np
import tensorflow as tf

from benchmarks import simclr_tf2_preprocess as official
from contrastive_jax.config_lib import augment as aug_config
from contrastive_jax.data import augment, pipeline

W, H, CLASSES, SIZE, BATCH = 500, 375, 10, 224, 64


def make_folder(root: str, n: int, seed: int = 0) -> list[str]:
  """The JPEG paths of the folder dataset at root (written on first use)."""
  rng = np.random.default_rng(seed)
  paths = []
  for i in range(n):
    d = os.path.join(root, "train", f"class_{i % CLASSES}")
    path = os.path.join(d, f"img_{i:05d}.jpg")
    paths.append(path)
    if os.path.exists(path):
      continue
    os.makedirs(d, exist_ok=True)
    coarse = rng.uniform(0, 255, size=(H // 25 + 1, W // 25 + 1, 3)).astype(np.float32)
    img = tf.image.resize(coarse[None], (H, W), method="bicubic")[0].numpy()
    img = np.clip(img + rng.normal(0, 12, size=img.shape), 0, 255).astype(np.uint8)
    tf.io.write_file(path, tf.io.encode_jpeg(img, quality=90))
  return paths


def _files(paths):
  ds = tf.data.Dataset.from_tensor_slices(paths).repeat()
  return ds.map(tf.io.read_file, num_parallel_calls=tf.data.AUTOTUNE)


def official_dataset(paths):
  def two_views(contents):
    image = tf.image.decode_jpeg(contents, channels=3)  # once, for both views
    image = tf.image.convert_image_dtype(image, tf.float32)  # official preprocess_image
    views = [official.preprocess_for_train(image, SIZE, SIZE, 1.0) for _ in range(2)]
    return {"view1": views[0], "view2": views[1]}

  ds = _files(paths).map(two_views, num_parallel_calls=tf.data.AUTOTUNE)
  return ds.batch(BATCH, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


def project_ops_dataset(paths):
  cfg = aug_config.view(SIZE, color_strength=1.0, blur_prob=0.0)

  def two_views(i, contents):
    image = tf.image.convert_image_dtype(tf.image.decode_jpeg(contents, channels=3), tf.float32)
    seeds = augment.views_seeds(tf.stack([tf.constant(0, tf.int64), i]))
    return {
      "view1": augment.simclr_view(image, seeds[0], cfg),
      "view2": augment.simclr_view(image, seeds[1], cfg),
    }

  ds = tf.data.Dataset.zip(tf.data.Dataset.range(2**62), _files(paths))
  ds = ds.map(two_views, num_parallel_calls=tf.data.AUTOTUNE)
  return ds.batch(BATCH, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


def project_reader(root: str):
  cfg = ml_collections.ConfigDict(
    dict(
      dataset=f"folder:{root}",
      data_dir=None,
      train_split="train",
      image_size=SIZE,
      shuffle_buffer=1000,
      aug=aug_config.view(SIZE, color_strength=1.0, blur_prob=0.0),
      aug2=None,
      cache=False,
      seed=0,
    )
  )
  return pipeline.pretrain_iterator(cfg, batch_size=BATCH, process_index=0, process_count=1)


def _measure(name, it, steps, warmup=3, rounds=2):
  t0 = time.perf_counter()
  batch = next(it)
  startup = time.perf_counter() - t0
  for _ in range(warmup):
    next(it)
  best, best_cpu = 0.0, 0.0
  for _ in range(rounds):  # best of rounds: a shared CPU's bursts of load count less
    t1, c1 = time.perf_counter(), time.process_time()
    for _ in range(steps):
      batch = next(it)
    best = max(best, steps * BATCH / (time.perf_counter() - t1))
    # CPU seconds of all this process's threads (tf.data's included): the work per pair, which
    # other jobs on the machine do not change much, unlike the wall-clock rate.
    best_cpu = max(best_cpu, steps * BATCH / (time.process_time() - c1))
  assert batch["view1"].shape == (BATCH, SIZE, SIZE, 3), batch["view1"].shape
  return dict(
    case=name,
    image=f"{W}x{H} JPEG",
    batch_size=BATCH,
    steps=steps,
    rounds=rounds,
    startup_s=round(startup, 2),
    pairs_per_s=round(best, 1),
    pairs_per_s_per_core=round(best / (os.cpu_count() or 1), 1),
    pairs_per_cpu_s=round(best_cpu, 1),
    loadavg=os.getloadavg(),
  )


def run_cases(root: str, n: int, steps: int = 10) -> list[dict]:
  """The three cases, one after the other, each iterator dropped before the next starts."""
  paths = make_folder(root, n)
  opts = tf.data.Options()
  opts.deterministic = False
  cases = [
    ("500x375 official simclr tf2 (2 views)", lambda: official_dataset(paths)),
    ("500x375 project ops (2 views)", lambda: project_ops_dataset(paths)),
  ]
  out = [_measure(k, f().with_options(opts).as_numpy_iterator(), steps) for k, f in cases]
  out.append(_measure("500x375 project streaming folder reader", project_reader(root), steps))
  return out
