r"""BYOL on CIFAR-10 (Grill et al. 2020).

Online encoder -> projector -> predictor regresses the EMA target's projection of the other view
(symmetric 2 - 2 cos loss); the target's tau goes from `momentum` to 1 on a cosine over the run. No
negatives; embedding_std (logged) stays well above 0 when the run does not collapse.

Presets (`--config=configs/byol_cifar10.py:PRESET`): cpu    (default) the same tiny ResNet, AdamW
  and 3-epoch schedule as simclr_cifar10.py:cpu. paper  solo-learn's CIFAR recipe: ResNet-18 (CIFAR
  stem), projector and predictor 4096-256 (BN in the hidden layer), tau 0.99 -> 1, batch 256, LARS
  lr 1.0 x B/256, trust coefficient 0.02, weight decay 1e-5, 10 warm-up epochs, 1000 epochs,
  asymmetric solarisation (0 / 0.2): solo-learn reports 92.6% linear top-1 on CIFAR-10.

Launch:
  python -m contrastive_jax.main --config=configs/byol_cifar10.py:cpu --workdir=runs/byol_cpu
  python -m contrastive_jax.main --config=configs/byol_cifar10.py:paper --workdir=runs/byol_c10
"""

from contrastive_jax import config_base


def get_config(preset: str = "cpu"):
  c = config_base.base_config()
  c.method = "byol"
  c.dataset = "cifar10"
  c.image_size = 32
  c.aug = config_base.aug_config(32, color_strength=0.5, blur_prob=0.0)
  c.aug2 = config_base.aug_config(32, color_strength=0.5, blur_prob=0.0, solarize_prob=0.2)
  c.head.update(use_bn=True, last_bn=False)
  c.predictor.update(use_bn=True, last_bn=False)
  c.method_args.update(momentum=0.99, momentum_final=1.0)
  if preset == "cpu":
    config_base.apply_cpu_preset(c)
    c.predictor.update(hidden_dims=(256,), out_dim=64)
  elif preset == "paper":
    c.model.name = "resnet18"
    c.head.update(hidden_dims=(4096,), out_dim=256)
    c.predictor.update(hidden_dims=(4096,), out_dim=256)
    c.batch_size = 256
    c.total_epochs = 1000.0
    c.optim.update(
      name="lars",
      base_lr=1.0,
      lr_scaling="linear",
      weight_decay=1e-5,
      trust_coefficient=0.02,
      warmup_epochs=10.0,
    )
    c.eval_every_epochs = 50.0
  else:
    raise ValueError(f"Unknown preset {preset!r} for byol_cifar10.py: use cpu or paper.")
  return c
