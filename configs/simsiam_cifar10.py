r"""SimSiam on CIFAR-10 (Chen & He 2021).

One network: encoder -> projector (BN on every layer, output included) -> bottleneck predictor;
symmetrised negative cosine with a stop-gradient on the projector branch; no EMA, no negatives.
`--config.method_args.stop_gradient=False` reproduces the paper's collapse ablation (embedding_std
-> 0).

Presets (`--config=configs/simsiam_cifar10.py:PRESET`): cpu    (default) the same tiny ResNet, AdamW
  and 3-epoch schedule as simclr_cifar10.py:cpu (projector 256-64 with output BN, predictor 16-64
  bottleneck). paper  the paper's CIFAR setting (Appendix D): ResNet-18 (CIFAR stem), 2-layer
  projector 2048-2048, predictor 512-2048, batch 512, SGD lr 0.05 x B/256, momentum 0.9, weight
  decay 5e-4, cosine, 800 epochs: the paper reports 91.8% linear top-1 (solo-learn: 90.5% after 1000
  epochs).

Launch:
  python -m contrastive_jax.main --config=configs/simsiam_cifar10.py:cpu --workdir=runs/simsiam_cpu
  python -m contrastive_jax.main --config=configs/simsiam_cifar10.py:paper --workdir=runs/simsiam_c10
"""

from contrastive_jax import config_base


def get_config(preset: str = "cpu"):
  c = config_base.base_config()
  c.method = "simsiam"
  c.dataset = "cifar10"
  c.image_size = 32
  c.aug = config_base.aug_config(32, color_strength=0.5, blur_prob=0.0, crop_area_min=0.2)
  c.head.update(use_bn=True, last_bn=True)
  c.predictor.update(use_bn=True, last_bn=False)
  c.method_args.update(stop_gradient=True)
  if preset == "cpu":
    config_base.apply_cpu_preset(c)
    c.predictor.update(hidden_dims=(16,), out_dim=64)
  elif preset == "paper":
    c.model.name = "resnet18"
    c.head.update(hidden_dims=(2048,), out_dim=2048)
    c.predictor.update(hidden_dims=(512,), out_dim=2048)
    c.batch_size = 512
    c.total_epochs = 800.0
    c.optim.update(
      name="sgd",
      base_lr=0.05,
      lr_scaling="linear",
      weight_decay=5e-4,
      momentum=0.9,
      warmup_epochs=0.0,
    )
    c.eval_every_epochs = 50.0
  else:
    raise ValueError(f"Unknown preset {preset!r} for simsiam_cifar10.py: use cpu or paper.")
  return c
