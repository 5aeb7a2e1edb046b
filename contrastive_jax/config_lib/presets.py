"""The shared CPU-sized runs of the configs' `cpu` presets, so methods compare on equal terms.

Each is applied on top of a full recipe and replaces its model size, batch, schedule and optimiser
(the method, its views and the head's BatchNorm flags stay the recipe's).
"""

from collections.abc import Callable, Sequence
import os

import ml_collections

from contrastive_jax.config_lib import base, datasets, methods


def cpu(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """The CPU-sized run every CIFAR config's `cpu` preset shares (README "What ./run.sh reaches").

  A 0.3M-parameter ResNet (widths 16-32-64-128, one block per stage), a 256-64 head (and the
  method's CPU predictor), 16x16 images (training views and kNN alike), batch 256, 5 epochs of
  AdamW (peak 2e-3; SimCLR's preset, the ./run.sh default, raises both: configs/simclr_cifar10.py
  says why), crops of at
  least 20% of the image (both views), kNN at step 0 and at the end.

  Why 16 px: on 2 CPU cores the step is compute-bound and costs about pixels (resnet_tiny, batch
  256: 193 / 332 / 543 images/s at 32 / 24 / 16 px, benchmarks/results/train_step_resolution.json),
  and at equal wall time more epochs at 16 px beat fewer at 32 px (SimCLR kNN: 47.2% after 3 epochs
  at 32 px, 49.7% after 4.5 at 24 px, 49.5% after 7 at 16 px; evaluating the 16-px encoder at 24 or
  32 px changed it by +0.5 / -0.3 points, so the kNN runs at the training size).
  """
  _tiny_model(c)
  datasets.resize(c, 16)
  c.batch_size = 256
  c.total_epochs = 5.0
  _adamw(c, base_lr=2e-3, warmup_epochs=0.2)
  c.aug.crop_area_min = 0.2
  if c.aug2 is not None:
    c.aug2.crop_area_min = 0.2
  c.log_every_steps = 20
  c.checkpoint_every_steps = 200
  c.eval_every_epochs = 0.0
  c.eval_at_start = True
  return c


def smoke(
  c: ml_collections.ConfigDict,
  data: Callable[[ml_collections.ConfigDict], None] = datasets.synthetic,
) -> ml_collections.ConfigDict:
  """The ImageNet configs' `cpu` preset: 20 steps of a tiny ResNet, a smoke test of the whole loop.

  Args:
    c: a full recipe (its stem, views and method stay).
    data: a dataset preset; the offline 'synthetic' set by default.

  Returns:
    `c`: batch 64, AdamW 1e-3, kNN (k=20) only at the end.
  """
  data(c)
  _tiny_model(c)
  c.batch_size = 64
  c.total_steps = 20
  _adamw(c, base_lr=1e-3, warmup_epochs=0.0)
  c.knn.update(batch_size=256, k=20)
  c.eval_every_epochs = 0.0
  return c


def check(preset: str, config_file: str, choices: Sequence[str]) -> None:
  """Raises a ValueError naming the config file and its presets unless `preset` is one of them."""
  if preset not in choices:
    names = list(choices)
    listed = names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"
    raise ValueError(
      f"Unknown preset {preset!r} for {os.path.basename(config_file)}: use {listed}."
    )


def _tiny_model(c: ml_collections.ConfigDict) -> None:
  c.model.name = "resnet_tiny"
  c.head.update(hidden_dims=(256,), out_dim=64)
  methods.cpu_predictor(c)


def _adamw(c: ml_collections.ConfigDict, base_lr: float, warmup_epochs: float) -> None:
  # The run's own optimiser from the defaults: none of the recipe's (a LARS trust coefficient,
  # SGD momentum) carries over.
  c.optim = base.base_config().optim
  c.optim.update(
    name="adamw",
    base_lr=base_lr,
    lr_scaling="none",
    weight_decay=1e-4,
    warmup_epochs=warmup_epochs,
  )
