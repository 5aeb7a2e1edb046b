r"""MoCo v2 on ImageNet (Chen et al. 2020, "Improved baselines with momentum contrastive learning").

ResNet-50, MLP projector 2048-128 without BatchNorm, queue of 65,536 keys, key-encoder momentum
0.999, temperature 0.2, batch 256, SGD lr 0.03 x B/256 with momentum 0.9, weight decay 1e-4, cosine
schedule, MoCo v2 augmentation (crop 0.2-1, colour jitter 0.4/0.4/0.4/0.1 p=0.8, grayscale 0.2, blur
p=0.5). BatchNorm is synchronised over all devices in both encoders, which removes the need for
MoCo's shuffled BN. Published linear top-1: 67.5% after 200 epochs (`paper`), 71.1% after 800
(`paper_800ep`). `cpu`: a tiny ResNet on the offline 'synthetic' dataset (a smoke test of the whole
loop).

Launch on a TPU pod (every worker):
  ./run.sh train --config=configs/moco_v2_imagenet.py:paper --workdir=/gcs/$BUCKET/moco_v2_in \
    --config.data_dir=gs://$BUCKET/tensorflow_datasets
  python -m contrastive_jax.main --config=configs/moco_v2_imagenet.py:cpu --workdir=runs/moco_v2_in_cpu
"""

from contrastive_jax import config_base


def get_config(preset: str = "paper"):
  c = config_base.base_config()
  c.method = "moco_v2"
  c.dataset = "imagenet2012"
  c.eval_split = "validation"
  c.image_size = 224
  c.shuffle_buffer = 50_000
  c.cache = False
  c.aug = config_base.aug_config(224, color_strength=0.5, blur_prob=0.5, crop_area_min=0.2)
  c.model.update(name="resnet50", width=1.0, stem="imagenet", norm="batch")
  c.head.update(hidden_dims=(2048,), out_dim=128, use_bn=False, last_bn=False)
  c.batch_size = 256
  c.total_epochs = 200.0
  c.optim.update(
    name="sgd",
    base_lr=0.03,
    lr_scaling="linear",
    weight_decay=1e-4,
    momentum=0.9,
    warmup_epochs=0.0,
  )
  c.method_args.update(temperature=0.2, queue_size=65536, momentum=0.999, momentum_cosine=False)
  c.log_every_steps = 100
  c.checkpoint_every_steps = 5000
  c.eval_every_epochs = 10.0
  c.knn.batch_size = 1024
  if preset == "paper":
    pass
  elif preset == "paper_800ep":
    c.total_epochs = 800.0
    c.eval_every_epochs = 50.0
  elif preset == "cpu":
    c.dataset, c.eval_split, c.cache = "synthetic", "test", True
    c.image_size = 32
    c.aug = config_base.aug_config(32, color_strength=0.5, blur_prob=0.5, crop_area_min=0.2)
    c.model.update(name="resnet_tiny", stem="imagenet")
    c.head.update(hidden_dims=(256,), out_dim=64)
    c.batch_size = 64
    c.total_steps = 20
    c.method_args.queue_size = 1024
    c.optim.update(name="adamw", base_lr=1e-3, lr_scaling="none", weight_decay=1e-4)
    c.knn.update(batch_size=256, k=20)
    c.eval_every_epochs = 0.0
  else:
    raise ValueError(
      f"Unknown preset {preset!r} for moco_v2_imagenet.py: use paper, paper_800ep or cpu."
    )
  return c
