r"""SimCLR batch-size scaling (Chen et al. 2020, Figure 9 and Appendix B.1 / Table B.1): a grid of
pre-training runs, batch size x epochs x LR scaling rule (linear: base * B / 256, sqrt: base *
sqrt(B)) x temperature, each in W/bs{B}_ep{E}_{rule}_t{T}. See docs/batch_scaling.md for results and
estimates.

Presets (`--config=configs/sweep_batch_size.py:PRESET`): cpu          CIFAR-10 scaled down for a
  shared 2-core CPU (~35 min for the 8 runs): resnet_tiny on 16x16 views of the first 10k training
  images, 1 epoch, batch 64..2048 (the gradient cache above 512 rows per device), LARS with the
  paper's two rules, kNN top-1 on 2k test images. Add a budget later with
  --config.sweep.epochs='(1.0,2.0)' (finished runs are skipped).
  cifar10_gpu  CIFAR-10 on one GPU: ResNet-18 (CIFAR stem), batch 256..8192 (gradient cache above 1024
               rows), 100 and 200 epochs, both rules, temperature 0.5, kNN top-1 on the full test split.
  imagenet     the paper's grid on a TPU pod: ResNet-50, batch 256..8192, 100/200/400/800 epochs, both
               rules, temperature 0.1 (Table B.1); gradient cache above 32 rows per core (v3-128: only
               batch 8192, in 2 chunks).

Run the grid here, one run after another (resumable: finished runs are skipped, unfinished ones resume
from their checkpoints), or print one launch command per run for a cluster:
  python -m contrastive_jax.main --config=configs/sweep_batch_size.py:cpu --workdir=runs/sweep_cpu
  python -m contrastive_jax.main --config=configs/sweep_batch_size.py:imagenet \
      --config.sweep.action=print --workdir=gs://$BUCKET/sweep_in
Then: python -m contrastive_jax.batch_scaling --sweep_dir=runs/sweep_cpu --out=docs/batch_scaling
"""

import ml_collections

from configs import simclr_cifar10, simclr_imagenet
from contrastive_jax.config_lib import base, presets

PRESETS = ("cpu", "cifar10_gpu", "imagenet")


def get_config(preset: str = "cpu"):
  presets.check(preset, __file__, PRESETS)
  if preset == "cpu":
    c = simclr_cifar10.get_config("cpu")
    c.image_size = 16
    c.aug.image_size = 16
    c.train_split = "train[:10000]"
    c.eval_split = "test[:2000]"
    c.optim.update(name="lars", weight_decay=1e-6, warmup_epochs=0.2, momentum=0.9)
    c.method_args.temperature = 0.5
    c.log_every_steps = 10
    c.checkpoint_every_steps = 50
    c.eval_at_start = False
    c.eval_every_epochs = 0.0
    c.knn.batch_size = 1000
    # The paper's Appendix B.1 rules: 0.3 x B/256 and 0.075 x sqrt(B) (equal at B = 4096).
    c.sweep = base.sweep(
      config_file="configs/sweep_batch_size.py:cpu",
      batch_sizes=(64, 256, 1024, 2048),
      epochs=(1.0,),
      temperatures=(0.5,),
      max_device_batch=512,
    )
  elif preset == "cifar10_gpu":
    c = simclr_cifar10.get_config("paper")
    c.eval_every_epochs = 0.0
    c.checkpoint_every_steps = 2000
    # linear 1.0 x B/256 is the CIFAR recipe (google-research/simclr README); the sqrt base gives
    # the same LR at the recipe's batch of 512 (as 0.3 / 0.075 agree at ImageNet's 4096).
    c.sweep = base.sweep(
      config_file="configs/sweep_batch_size.py:cifar10_gpu",
      batch_sizes=(256, 512, 1024, 2048, 4096, 8192),
      epochs=(100.0, 200.0),
      temperatures=(0.5,),
      max_device_batch=1024,
      num_devices=1,
      base_lr=ml_collections.ConfigDict(dict(linear=1.0, sqrt=0.0884)),
    )
  elif preset == "imagenet":
    c = simclr_imagenet.get_config("100ep")
    c.sweep = base.sweep(
      config_file="configs/sweep_batch_size.py:imagenet",
      batch_sizes=(256, 512, 1024, 2048, 4096, 8192),
      epochs=(100.0, 200.0, 400.0, 800.0),
      temperatures=(0.1,),
      max_device_batch=32,
      num_devices=128,
    )
  c.mode = "sweep"
  return c
