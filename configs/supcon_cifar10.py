r"""Supervised contrastive learning (SupCon) on CIFAR-10 (Khosla et al. 2020).

Two views per image; every view with the same label, on any device, is a positive; temperature 0.1;
projector Dense-ReLU-Dense without BN (as in the paper). SupCon is a pre-training stage: follow it with
linear evaluation of the frozen encoder, as the paper does:
  python -m contrastive_jax.main --config=configs/linear_eval.py:paper \
    --config.pretrained_workdir=runs/supcon_c10 --workdir=runs/supcon_c10_linear

Presets (`--config=configs/supcon_cifar10.py:PRESET`): cpu    (default) the same tiny ResNet, AdamW
  and 3-epoch schedule as simclr_cifar10.py:cpu. paper  ResNet-18 (CIFAR stem), projector 512-128,
  batch 1024, SGD lr 0.5 (= 0.125 x B/256), momentum 0.9, weight decay 1e-4, cosine, 1000 epochs, T
  0.1. The paper reports 96.0% top-1 with ResNet-50; solo-learn reports 93.8% with ResNet-18.

Launch:
  python -m contrastive_jax.main --config=configs/supcon_cifar10.py:cpu --workdir=runs/supcon_cpu
  python -m contrastive_jax.main --config=configs/supcon_cifar10.py:paper --workdir=runs/supcon_c10
"""

from contrastive_jax.config_lib import augment, base, datasets, methods, presets

PRESETS = ("cpu", "paper")


def get_config(preset: str = "cpu"):
  presets.check(preset, __file__, PRESETS)
  c = methods.configure(base.base_config(), "supcon")
  datasets.cifar10(c)
  c.aug = augment.view(32)
  c.head.update(hidden_dims=(512,), out_dim=128)
  c.update(batch_size=1024, total_epochs=1000.0, eval_every_epochs=50.0)
  c.optim.update(name="sgd", base_lr=0.125, weight_decay=1e-4)
  return presets.cpu(c) if preset == "cpu" else c
