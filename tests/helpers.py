"""Tiny configs and batches shared by the trainer tests."""

import numpy as np

from contrastive_jax.config_lib import augment, base


def tiny_config(method: str = "simclr", **overrides):
  """A config that trains in seconds on CPU: nano ResNet (one block), synthetic data, 16x16 views."""
  c = base.base_config()
  c.method = method
  c.dataset = "synthetic"
  c.image_size = 16
  c.aug = augment.view(16, color_strength=0.5)
  c.model.name = "resnet_nano"
  c.head.hidden_dims = (32,)
  c.head.out_dim = 16
  c.predictor.hidden_dims = (32,)
  c.predictor.out_dim = 16
  c.batch_size = 32
  c.total_steps = 4
  c.log_every_steps = 2
  c.checkpoint_every_steps = 2
  c.eval_every_epochs = 0.0
  c.shuffle_buffer = 256
  c.knn.batch_size = 64
  c.knn.k = 20
  c.optim.update(
    name="adamw", base_lr=1e-3, lr_scaling="none", weight_decay=1e-4, warmup_epochs=0.0
  )
  c.method_args.temperature = 0.2
  for k, v in overrides.items():
    target = c
    *path, last = k.split(".")
    for p in path:
      target = target[p]
    target[last] = v
  return c


def random_batch(batch_size: int, image_size: int = 16, num_classes: int = 10, seed: int = 0):
  rng = np.random.default_rng(seed)
  return {
    "view1": rng.uniform(size=(batch_size, image_size, image_size, 3)).astype(np.float32),
    "view2": rng.uniform(size=(batch_size, image_size, image_size, 3)).astype(np.float32),
    "label": rng.integers(0, num_classes, size=(batch_size,)).astype(np.int32),
  }
