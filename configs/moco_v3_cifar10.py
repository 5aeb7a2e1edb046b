r"""MoCo v3 on CIFAR-10 (Chen, Xie & He 2021).

Online encoder -> projector -> predictor, momentum target (encoder + projector; momentum 0.99 -> 1
on a cosine over the run), symmetric InfoNCE with in-batch negatives of the whole global batch (all
devices), temperature 0.2, no queue. BatchNorm is synchronised over all devices.

Presets (`--config=configs/moco_v3_cifar10.py:PRESET`):
  cpu    (default) the same tiny ResNet, AdamW and 3-epoch schedule as simclr_cifar10.py:cpu.
  paper  solo-learn's CIFAR recipe (scripts/pretrain/cifar/mocov3.yaml): ResNet-18 (CIFAR stem),
         projector 4096-256 (BN on the output), predictor 4096-256, batch 256, LARS lr 0.3 x B/256
         with clip_lr and trust coefficient (eta) 0.02, weight decay 1e-6, 10 warm-up epochs, 1000
         epochs, T 0.2, per-view BN, the asymmetric views of byol_cifar10.py:paper: solo-learn
         reports 93.10% linear top-1 on CIFAR-10.

Launch:
  python -m contrastive_jax.main --config=configs/moco_v3_cifar10.py:cpu --workdir=runs/moco_v3_cpu
  python -m contrastive_jax.main --config=configs/moco_v3_cifar10.py:paper --workdir=runs/moco_v3_c10
"""

from configs import byol_cifar10
from contrastive_jax.config_lib import methods, presets

PRESETS = ("cpu", "paper")


def get_config(preset: str = "cpu"):
  presets.check(preset, __file__, PRESETS)
  # The same CIFAR recipe as BYOL's (views, widths, batch, schedule, LARS with clip_lr and eta
  # 0.02: both follow solo-learn), with MoCo v3's loss, LR 0.3 and weight decay 1e-6.
  c = methods.configure(byol_cifar10.get_config(preset), "moco_v3")
  if preset == "paper":
    c.optim.update(base_lr=0.3, weight_decay=1e-6)
  return c
