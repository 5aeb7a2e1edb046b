r"""MoCo v2 on CIFAR-10.

Momentum key encoder (EMA of encoder + projector, momentum 0.99), a queue of 4096 negative keys fed
with the keys of the whole global batch every step, InfoNCE at temperature 0.2, MLP projector
without BatchNorm (MoCo v2). BatchNorm is synchronised over all devices in both encoders, which
removes the need for MoCo's shuffled BN (a query and its key never see per-device batch statistics).

Presets (`--config=configs/moco_v2_cifar10.py:PRESET`): cpu    (default) the same 0.3M-parameter
  ResNet, AdamW and 3-epoch schedule as simclr_cifar10.py:cpu, so methods compare fairly on a 2-core
  CPU (about 15 minutes); kNN at step 0 and at the end. paper  the schedule of the official MoCo
  CIFAR-10 demo (facebookresearch/moco colab/moco_cifar10_demo.ipynb: "lr 0.06 for batch 512, or
  0.03 for batch 256"): ResNet-18 (CIFAR stem), batch 256, SGD lr 0.03 x B/256, momentum 0.9,
  weight decay 5e-4, cosine, no warm-up, 800 epochs, queue 4096, m 0.99, crops of 8-100% of the
  image (torchvision's RandomResizedCrop(32)), colour jitter 0.4/0.4/0.4/0.1, with MoCo v2's MLP
  head and T 0.2. No official number for this MoCo v2 variant: the demo itself (MoCo v1's linear
  head, T 0.1, asymmetric loss) reports 82.6 / 86.3 / 88.7% kNN top-1 after 200 / 400 / 800 epochs;
  solo-learn's symmetric MoCo v2+ reaches 92.9% linear top-1 after 1000.

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
  c.aug = augment.view(32, crop_min_object_covered=0.0)
  c.head.update(hidden_dims=(512,), out_dim=128)
  c.update(batch_size=256, total_epochs=800.0, eval_every_epochs=50.0)
  c.optim.update(name="sgd", base_lr=0.03, weight_decay=5e-4, warmup_epochs=0.0)
  return presets.cpu(c) if preset == "cpu" else c
