r"""Supervised contrastive learning (SupCon) on ImageNet (Khosla et al. 2020), ResNet-50.

Labels define the positives across all views and devices; temperature 0.1; projector 2048-128 without
BN; batch 6144, LARS (lr 0.2 x B/256 = 4.8), weight decay 1e-6, 10 warm-up epochs, cosine, 700 epochs,
SimCLR augmentation, the official SupConLoss's temperature / base_temperature factor (0.07). The
official repository has no ImageNet recipe (these values follow the paper). The paper reports 78.7%
top-1 for ResNet-50 with a linear classifier trained on the frozen encoder afterwards:
  ./run.sh train --config=configs/linear_eval.py:paper --config.pretrained_workdir=gs://$BUCKET/supcon_in \
    --workdir=gs://$BUCKET/supcon_in_linear
`cpu`: a tiny ResNet on the offline 'synthetic' dataset.

Launch on a TPU pod (every worker):
  ./run.sh train --config=configs/supcon_imagenet.py:paper --workdir=gs://$BUCKET/supcon_in \
    --config.data_dir=gs://$BUCKET/tensorflow_datasets
  python -m contrastive_jax.main --config=configs/supcon_imagenet.py:cpu --workdir=runs/supcon_in_cpu
"""

from contrastive_jax.config_lib import augment, base, datasets, methods, presets

PRESETS = ("paper", "cpu")


def get_config(preset: str = "paper"):
  presets.check(preset, __file__, PRESETS)
  c = methods.configure(base.base_config(), "supcon")
  datasets.imagenet2012(c)
  c.aug = augment.view(224, color_strength=1.0, blur_prob=0.5)
  c.head.update(hidden_dims=(2048,), out_dim=128)
  c.update(batch_size=6144, total_epochs=700.0, eval_every_epochs=50.0)
  c.optim.update(base_lr=0.2, weight_decay=1e-6)
  return presets.smoke(c) if preset == "cpu" else c
