r"""Supervised contrastive learning (SupCon) on ImageNet (Khosla et al. 2020), ResNet-50.

Labels define the positives across all views and devices; temperature 0.1; projector 2048-128 without
BN; batch 6144, LARS (lr 0.2 x B/256 = 4.8), weight decay 1e-6, 10 warm-up epochs, cosine, 700 epochs,
SimCLR augmentation. The paper reports 78.7% top-1 for ResNet-50 with a linear classifier trained on
the frozen encoder afterwards:
  ./run.sh train --config=configs/linear_eval.py:paper --config.pretrained_workdir=/gcs/$BUCKET/supcon_in \
    --workdir=/gcs/$BUCKET/supcon_in_linear
`cpu`: a tiny ResNet on the offline 'synthetic' dataset.

Launch on a TPU pod (every worker):
  ./run.sh train --config=configs/supcon_imagenet.py:paper --workdir=/gcs/$BUCKET/supcon_in \
    --config.data_dir=gs://$BUCKET/tensorflow_datasets
  python -m contrastive_jax.main --config=configs/supcon_imagenet.py:cpu --workdir=runs/supcon_in_cpu
"""

from contrastive_jax import config_base


def get_config(preset: str = "paper"):
  c = config_base.base_config()
  c.method = "supcon"
  c.dataset = "imagenet2012"
  c.eval_split = "validation"
  c.image_size = 224
  c.shuffle_buffer = 50_000
  c.cache = False
  c.aug = config_base.aug_config(224, color_strength=1.0, blur_prob=0.5)
  c.model.update(name="resnet50", width=1.0, stem="imagenet", norm="batch")
  c.head.update(hidden_dims=(2048,), out_dim=128, use_bn=False, last_bn=False)
  c.batch_size = 6144
  c.total_epochs = 700.0
  c.optim.update(
    name="lars", base_lr=0.2, lr_scaling="linear", weight_decay=1e-6, warmup_epochs=10.0
  )
  c.method_args.update(temperature=0.1)
  c.log_every_steps = 100
  c.checkpoint_every_steps = 2500
  c.eval_every_epochs = 50.0
  c.knn.batch_size = 1024
  if preset == "paper":
    pass
  elif preset == "cpu":
    c.dataset, c.eval_split, c.cache = "synthetic", "test", True
    c.image_size = 32
    c.aug = config_base.aug_config(32, color_strength=1.0, blur_prob=0.5)
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
    raise ValueError(f"Unknown preset {preset!r} for supcon_imagenet.py: use paper or cpu.")
  return c
