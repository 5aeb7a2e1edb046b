r"""SimSiam on CIFAR-10 (Chen & He 2021).

One network: encoder -> projector (BN on every layer, output included) -> bottleneck predictor;
symmetrised negative cosine with a stop-gradient on the projector branch; no EMA, no negatives.
`--config.method_args.stop_gradient=False` reproduces the paper's collapse ablation (embedding_std
-> 0).

Presets (`--config=configs/simsiam_cifar10.py:PRESET`): cpu    (default) the same tiny ResNet, AdamW
  and 3-epoch schedule as simclr_cifar10.py:cpu (projector 256-64 with output BN, predictor 16-64
  bottleneck). paper  the paper's CIFAR setting (Appendix D): ResNet-18 (CIFAR stem), 2-layer
  projector 2048-2048, predictor 512-2048, batch 512, SGD lr 0.03 x B/256, momentum 0.9, weight
  decay 5e-4, cosine, 800 epochs, the predictor's learning rate fixed (not decayed: main_simsiam.py
  --fix-pred-lr), each view through the network on its own (per-view BN), crops of 20-100% (no 10%
  floor) and colour jitter 0.4/0.4/0.4/0.1: the paper reports 91.8% linear top-1 (solo-learn: 90.5%
  after 1000 epochs with its own recipe).

Launch:
  python -m contrastive_jax.main --config=configs/simsiam_cifar10.py:cpu --workdir=runs/simsiam_cpu
  python -m contrastive_jax.main --config=configs/simsiam_cifar10.py:paper --workdir=runs/simsiam_c10
"""

from contrastive_jax.config_lib import augment, base, datasets, methods, presets

PRESETS = ("cpu", "paper")


def get_config(preset: str = "cpu"):
  presets.check(preset, __file__, PRESETS)
  c = methods.configure(base.base_config(), "simsiam")
  datasets.cifar10(c)
  c.aug = augment.view(32, crop_area_min=0.2, crop_min_object_covered=0.0)
  c.head.update(hidden_dims=(2048,), out_dim=2048)
  c.predictor.update(hidden_dims=(512,), out_dim=2048)
  c.update(batch_size=512, total_epochs=800.0, eval_every_epochs=50.0)
  c.optim.update(name="sgd", base_lr=0.03, weight_decay=5e-4, warmup_epochs=0.0)
  c.optim.param_groups.predictor = dict(fixed_lr=True)
  return presets.cpu(c) if preset == "cpu" else c
