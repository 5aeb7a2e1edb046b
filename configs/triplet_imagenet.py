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
  ./run.sh train --config=configs/triplet_imagenet.py:paper --workdir=/gcs/$BUCKET/triplet_in \
    --config.data_dir=gs://$BUCKET/tensorflow_datasets
  python -m contrastive_jax.main --config=configs/triplet_imagenet.py:cpu --workdir=runs/triplet_in_cpu
"""

from contrastive_jax import config_base


def get_config(preset: str = "paper"):
  c = config_base.base_config()
  c.method = "triplet"
  c.dataset = "imagenet2012"
  c.eval_split = "validation"
  c.image_size = 224
  c.shuffle_buffer = 50_000
  c.cache = False
  c.aug = config_base.aug_config(224, color_strength=0.5, blur_prob=0.5)
  c.model.update(name="resnet50", width=1.0, stem="imagenet", norm="batch")
  c.head.update(hidden_dims=(2048,), out_dim=128, use_bn=True, last_bn=False)
  c.batch_size = 4096
  c.total_epochs = 100.0
  c.optim.update(
    name="adamw", base_lr=1e-3, lr_scaling="none", weight_decay=1e-4, warmup_epochs=5.0
  )
  c.method_args.update(margin=0.2, mining="hard")
  c.log_every_steps = 100
  c.checkpoint_every_steps = 2500
  c.eval_every_epochs = 10.0
  c.knn.batch_size = 1024
  if preset == "paper":
    pass
  elif preset == "cpu":
    c.dataset, c.eval_split, c.cache = "synthetic", "test", True
    c.image_size = 32
    c.aug = config_base.aug_config(32, color_strength=0.5, blur_prob=0.5)
    c.model.update(name="resnet_tiny", stem="imagenet")
    c.head.update(hidden_dims=(256,), out_dim=64)
    c.batch_size = 64
    c.total_steps = 20
    c.optim.update(
      name="adamw", base_lr=1e-3, lr_scaling="none", weight_decay=1e-4, warmup_epochs=0.0
    )
    c.knn.update(batch_size=256, k=20)
    c.eval_every_epochs = 0.0
  else:
    raise ValueError(f"Unknown preset {preset!r} for triplet_imagenet.py: use paper or cpu.")
  return c
