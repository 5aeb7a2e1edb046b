r"""Triplet loss (FaceNet, Schroff et al. 2015) with batch-hard mining (Hermans et al. 2017) on CIFAR-10.

Class labels act as identities; both augmented views of every image are embedded (so every anchor
has a positive), L2-normalised, and each anchor of the GLOBAL batch takes its hardest positive and
hardest negative (Hermans et al.); margin 0.2 in Euclidean distance (method_args.distance='l2').
method_args.mining='semi_hard' is FaceNet's semi-hard mining exactly as TensorFlow Addons'
triplet_semihard_loss: every anchor-positive pair, the closest negative farther than the positive,
else the farthest negative.

Presets (`--config=configs/triplet_cifar10.py:PRESET`):
  cpu    (default) the same tiny ResNet, AdamW and 3-epoch schedule as simclr_cifar10.py:cpu.
  paper  ResNet-18 (CIFAR stem), projector 512-128, batch 512, Adam(W) lr 3e-4 (Hermans et al.),
         weight decay 5e-4, 200 epochs, margin 0.2, batch-hard mining. There is no published
         CIFAR-10 number for this recipe: compare it with supcon_cifar10.py:paper under the same
         linear evaluation (configs/linear_eval.py) and record what it reaches in the README.

Launch:
  python -m contrastive_jax.main --config=configs/triplet_cifar10.py:cpu --workdir=runs/triplet_cpu
  python -m contrastive_jax.main --config=configs/triplet_cifar10.py:paper --workdir=runs/triplet_c10
"""

from contrastive_jax.config_lib import augment, base, datasets, methods, presets

PRESETS = ("cpu", "paper")


def get_config(preset: str = "cpu"):
  presets.check(preset, __file__, PRESETS)
  c = methods.configure(base.base_config(), "triplet")
  datasets.cifar10(c)
  c.aug = augment.view(32)
  c.head.update(hidden_dims=(512,), out_dim=128)
  c.update(batch_size=512, total_epochs=200.0, eval_every_epochs=20.0)
  c.optim.update(
    name="adamw", base_lr=3e-4, lr_scaling="none", weight_decay=5e-4, warmup_epochs=5.0
  )
  return presets.cpu(c) if preset == "cpu" else c
