r"""Supervised contrastive learning (SupCon) on CIFAR-10 (Khosla et al. 2020).

Two views per image; every view with the same label, on any device, is a positive; temperature 0.1;
projector Dense-ReLU-Dense without BN (as in the paper). SupCon is a pre-training stage: follow it with
linear evaluation of the frozen encoder, as the paper does:
  python -m contrastive_jax.main --config=configs/linear_eval.py:paper \
    --config.pretrained_workdir=runs/supcon_c10 --workdir=runs/supcon_c10_linear

Presets (`--config=configs/supcon_cifar10.py:PRESET`): cpu    (default) the same tiny ResNet, AdamW
  and 3-epoch schedule as simclr_cifar10.py:cpu. paper  the README command of HobbitLong/SupContrast
  (main_supcon.py --batch_size 1024 --learning_rate 0.5 --temp 0.1 --cosine) with ResNet-18 (CIFAR
  stem), projector Linear(512, 512)-ReLU-Linear(512, 128) (no BN), SGD lr 0.5 (= 0.125 x B/256), momentum
  0.9, weight decay 1e-4, 10 warm-up epochs (--warm, on for batches > 256), cosine to 1e-3 of the
  peak (eta_min = lr x 0.1^3), 1000 epochs, the loss x temperature / base_temperature (0.1 / 0.07,
  losses.py), crops of 20-100% (no 10% floor), colour jitter 0.4/0.4/0.4/0.1, no blur. The README
  reports 96.0% top-1 with ResNet-50 (this preset with --config.model.name=resnet50 and
  --config.head.hidden_dims=2048); solo-learn reports 93.8% with ResNet-18 (its own recipe).

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
  c.aug = augment.view(32, crop_area_min=0.2, crop_min_object_covered=0.0)
  c.head.update(hidden_dims=(512,), out_dim=128)
  c.update(batch_size=1024, total_epochs=1000.0, eval_every_epochs=50.0)
  c.optim.update(name="sgd", base_lr=0.125, weight_decay=1e-4, end_lr_factor=1e-3)
  return presets.cpu(c) if preset == "cpu" else c
