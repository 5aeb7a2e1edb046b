r"""MoCo v3 with ResNet-50 on ImageNet (Chen, Xie & He 2021; official moco-v3 CONFIG.md).

Projector 3-layer MLP 4096-4096-256 with BN on every layer (output BN without affine), predictor
4096-256, momentum target 0.99 -> 1 (cosine), symmetric InfoNCE over the global batch (no queue),
temperature 1.0 (the official ResNet-50 value; 0.2 is the ViT/CIFAR one), batch 4096, LARS lr
0.6 x B/256, weight decay 1e-6, 10 warm-up epochs, BYOL's asymmetric augmentation (crop 0.08-1, blur
1.0/0.1, solarize 0/0.2). Published linear top-1: 68.9% after 100 epochs (`paper`), 72.8% after 300
(`paper_300ep`: lr 0.3, wd 1.5e-6). `cpu`: tiny ResNet on the offline 'synthetic' dataset.

Launch on a TPU pod (every worker):
  ./run.sh train --config=configs/moco_v3_imagenet.py:paper --workdir=/gcs/$BUCKET/moco_v3_in \
    --config.data_dir=gs://$BUCKET/tensorflow_datasets
  python -m contrastive_jax.main --config=configs/moco_v3_imagenet.py:cpu --workdir=runs/moco_v3_in_cpu
"""

from contrastive_jax import config_base


def get_config(preset: str = "paper"):
  c = config_base.base_config()
  c.method = "moco_v3"
  c.dataset = "imagenet2012"
  c.eval_split = "validation"
  c.image_size = 224
  c.shuffle_buffer = 50_000
  c.cache = False
  c.aug = config_base.aug_config(224, color_strength=0.5, blur_prob=1.0)
  c.aug2 = config_base.aug_config(224, color_strength=0.5, blur_prob=0.1, solarize_prob=0.2)
  c.model.update(name="resnet50", width=1.0, stem="imagenet", norm="batch")
  c.head.update(hidden_dims=(4096, 4096), out_dim=256, use_bn=True, last_bn=True)
  c.predictor.update(hidden_dims=(4096,), out_dim=256, use_bn=True, last_bn=False)
  c.batch_size = 4096
  c.total_epochs = 100.0
  c.optim.update(
    name="lars", base_lr=0.6, lr_scaling="linear", weight_decay=1e-6, warmup_epochs=10.0
  )
  c.method_args.update(temperature=1.0, momentum=0.99, momentum_final=1.0)
  c.log_every_steps = 100
  c.checkpoint_every_steps = 2500
  c.eval_every_epochs = 10.0
  c.knn.batch_size = 1024
  if preset == "paper":
    pass
  elif preset == "paper_300ep":
    c.total_epochs = 300.0
    c.optim.update(base_lr=0.3, weight_decay=1.5e-6)
    c.eval_every_epochs = 25.0
  elif preset == "cpu":
    c.dataset, c.eval_split, c.cache = "synthetic", "test", True
    c.image_size = 32
    c.aug = config_base.aug_config(32, color_strength=0.5, blur_prob=1.0)
    c.aug2 = config_base.aug_config(32, color_strength=0.5, blur_prob=0.1, solarize_prob=0.2)
    c.model.update(name="resnet_tiny", stem="imagenet")
    c.head.update(hidden_dims=(256,), out_dim=64)
    c.predictor.update(hidden_dims=(256,), out_dim=64)
    c.batch_size = 64
    c.total_steps = 20
    c.method_args.temperature = 0.2
    c.optim.update(
      name="adamw", base_lr=1e-3, lr_scaling="none", weight_decay=1e-4, warmup_epochs=0.0
    )
    c.knn.update(batch_size=256, k=20)
    c.eval_every_epochs = 0.0
  else:
    raise ValueError(
      f"Unknown preset {preset!r} for moco_v3_imagenet.py: use paper, paper_300ep or cpu."
    )
  return c
