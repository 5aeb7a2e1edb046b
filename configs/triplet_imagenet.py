r"""Triplet loss (FaceNet / batch-hard) on ImageNet, ResNet-50, class labels as identities.

Both views of every image are embedded (128-d, L2-normalised); batch-hard mining over the global
batch (4096 images = 8192 embeddings, so ~8 per class on average), margin 0.2, AdamW lr 1e-3 (no
batch-size
scaling: Adam's steps do not grow with the batch), weight decay 1e-4, 5 warm-up epochs, 100 epochs.
There is no published ImageNet linear-evaluation number for this recipe (FaceNet reports face
verification, 99.63% on LFW); treat it as a supervised metric-learning baseline next to
supcon_imagenet.py and record what it reaches. `cpu`: a tiny ResNet on the offline 'synthetic'
dataset.

Launch on a TPU pod (every worker):
  ./run.sh train --config=configs/triplet_imagenet.py:paper --workdir=gs://$BUCKET/triplet_in \
    --config.data_dir=gs://$BUCKET/tensorflow_datasets
  python -m contrastive_jax.main --config=configs/triplet_imagenet.py:cpu --workdir=runs/triplet_in_cpu
"""

from contrastive_jax.config_lib import augment, base, datasets, methods, presets

PRESETS = ("paper", "cpu")


def get_config(preset: str = "paper"):
  presets.check(preset, __file__, PRESETS)
  c = methods.configure(base.base_config(), "triplet")
  datasets.imagenet2012(c)
  c.aug = augment.view(224, blur_prob=0.5)
  c.head.update(hidden_dims=(2048,), out_dim=128, last_bn=False)
  c.update(batch_size=4096, total_epochs=100.0)
  c.optim.update(
    name="adamw", base_lr=1e-3, lr_scaling="none", weight_decay=1e-4, warmup_epochs=5.0
  )
  return presets.smoke(c) if preset == "cpu" else c
