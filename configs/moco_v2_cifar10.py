r"""MoCo v2 on CIFAR-10.

Momentum key encoder (EMA of encoder + projector, momentum 0.99), a queue of 4096 negative keys fed
with the keys of the whole global batch every step, InfoNCE at temperature 0.2, MLP projector
without BatchNorm (MoCo v2). BatchNorm is synchronised over all devices in both encoders, which
removes the need for MoCo's shuffled BN (a query and its key never see per-device batch statistics).

Presets (`--config=configs/moco_v2_cifar10.py:PRESET`): cpu    (default) the same 0.3M-parameter
  ResNet, AdamW and 3-epoch schedule as simclr_cifar10.py:cpu, so methods compare fairly on a 2-core
  CPU (about 15 minutes); kNN at step 0 and at the end. paper  ResNet-18 (CIFAR stem), batch 256,
  SGD lr 0.06 x B/256, momentum 0.9, weight decay 5e-4, cosine, 800 epochs, queue 4096, m 0.99, T
  0.2 (the recipe of the official MoCo CIFAR-10 demo, which reports ~82.6% kNN top-1 after 200
  epochs with T 0.1 and ~90% after 800; solo-learn's symmetric MoCo v2+ reaches 92.9% linear top-1
  after 1000 epochs).

Launch:
  python -m contrastive_jax.main --config=configs/moco_v2_cifar10.py:cpu --workdir=runs/moco_v2_cpu
  python -m contrastive_jax.main --config=configs/moco_v2_cifar10.py:paper --workdir=runs/moco_v2_c10
Then a linear probe: python -m contrastive_jax.main --config=configs/linear_eval.py:paper \
  --config.pretrained_workdir=runs/moco_v2_c10 --workdir=runs/moco_v2_c10_linear
"""

from contrastive_jax.config_lib import augment, base, datasets, methods, presets

PRESETS = ("cpu", "paper")


def get_config(preset: str = "cpu"):
  presets.check(preset, __file__, PRESETS)
  c = methods.configure(base.base_config(), "moco_v2")
  datasets.cifar10(c)
  c.aug = augment.view(32, crop_area_min=0.2)
  c.head.update(hidden_dims=(512,), out_dim=128)
  c.update(batch_size=256, total_epochs=800.0, eval_every_epochs=50.0)
  c.optim.update(name="sgd", base_lr=0.06, weight_decay=5e-4, warmup_epochs=0.0)
  return presets.cpu(c) if preset == "cpu" else c
