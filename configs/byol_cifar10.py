r"""BYOL on CIFAR-10 (Grill et al. 2020).

Online encoder -> projector -> predictor regresses the EMA target's projection of the other view
(symmetric 2 - 2 cos loss); the target's tau goes from `momentum` to 1 on a cosine over the run. No
negatives; embedding_std (logged) stays well above 0 when the run does not collapse.

Presets (`--config=configs/byol_cifar10.py:PRESET`): cpu    (default) the same tiny ResNet, AdamW
  and 3-epoch schedule as simclr_cifar10.py:cpu. paper  solo-learn's CIFAR recipe: ResNet-18 (CIFAR
  stem), projector and predictor 4096-256 (BN in the hidden layer), tau 0.99 -> 1, batch 256, LARS
  lr 1.0 x B/256 with solo-learn's clip_lr and trust coefficient 0.02, weight decay 1e-5, 10
  warm-up epochs, 1000 epochs, each view through the networks on its own (per-view BN), its
  asymmetric views (colour jitter 0.4/0.4/0.2/0.1, solarisation 0 / 0.2, crops 0.08-1 without a 10%
  floor) (solo-learn scripts/pretrain/cifar/byol.yaml, augmentations/asymmetric.yaml): solo-learn
  reports 92.58% linear top-1 on CIFAR-10.

Launch:
  python -m contrastive_jax.main --config=configs/byol_cifar10.py:cpu --workdir=runs/byol_cpu
  python -m contrastive_jax.main --config=configs/byol_cifar10.py:paper --workdir=runs/byol_c10
"""

from contrastive_jax.config_lib import augment, base, datasets, methods, presets

PRESETS = ("cpu", "paper")


def get_config(preset: str = "cpu"):
  presets.check(preset, __file__, PRESETS)
  c = methods.configure(base.base_config(), "byol")
  datasets.cifar10(c)
  asymmetric = dict(color_saturation=0.2, crop_min_object_covered=0.0)
  c.aug = augment.view(32, **asymmetric)
  c.aug2 = augment.view(32, solarize_prob=0.2, **asymmetric)
  c.head.update(hidden_dims=(4096,), out_dim=256)
  c.predictor.update(hidden_dims=(4096,), out_dim=256)
  c.update(batch_size=256, total_epochs=1000.0, eval_every_epochs=50.0)
  c.optim.update(base_lr=1.0, weight_decay=1e-5, trust_coefficient=0.02, clip_lr=True)
  return presets.cpu(c) if preset == "cpu" else c
