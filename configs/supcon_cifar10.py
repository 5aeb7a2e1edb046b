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

from contrastive_jax import config_base


def get_config(preset: str = "cpu"):
  c = config_base.base_config()
  c.method = "supcon"
  c.dataset = "cifar10"
  c.image_size = 32
  c.aug = config_base.aug_config(32, color_strength=0.5, blur_prob=0.0)
  c.head.update(use_bn=False, last_bn=False)
  c.method_args.update(temperature=0.1)
  if preset == "cpu":
    config_base.apply_cpu_preset(c)
  elif preset == "paper":
    c.model.name = "resnet18"
    c.head.update(hidden_dims=(512,), out_dim=128)
    c.batch_size = 1024
    c.total_epochs = 1000.0
    c.optim.update(
      name="sgd",
      base_lr=0.125,
      lr_scaling="linear",
      weight_decay=1e-4,
      momentum=0.9,
      warmup_epochs=10.0,
    )
    c.eval_every_epochs = 50.0
  else:
    raise ValueError(f"Unknown preset {preset!r} for supcon_cifar10.py: use cpu or paper.")
  return c
