r"""SimSiam on ImageNet (Chen & He 2021), ResNet-50.

3-layer projector 2048-2048-2048 (BN on every layer, output included), predictor 512-2048
bottleneck, batch 512, SGD lr 0.05 x B/256 (= 0.1), momentum 0.9, weight decay 1e-4, cosine, 100
epochs, MoCo v2 augmentation. The paper reports 68.1% linear top-1 after 100 epochs (`paper`) with
the predictor's learning rate held fixed (not decayed); here the predictor follows the common
schedule, which the paper finds slightly worse (Sec. 4.3). `cpu`: a tiny ResNet on the offline
'synthetic' dataset.

Launch on a TPU pod or a GPU host:
  ./run.sh train --config=configs/simsiam_imagenet.py:paper --workdir=/gcs/$BUCKET/simsiam_in \
    --config.data_dir=gs://$BUCKET/tensorflow_datasets
  python -m contrastive_jax.main --config=configs/simsiam_imagenet.py:cpu --workdir=runs/simsiam_in_cpu
"""

from contrastive_jax import config_base


def get_config(preset: str = "paper"):
  c = config_base.base_config()
  c.method = "simsiam"
  c.dataset = "imagenet2012"
  c.eval_split = "validation"
  c.image_size = 224
  c.shuffle_buffer = 50_000
  c.cache = False
  c.aug = config_base.aug_config(224, color_strength=0.5, blur_prob=0.5, crop_area_min=0.2)
  c.model.update(name="resnet50", width=1.0, stem="imagenet", norm="batch")
  c.head.update(hidden_dims=(2048, 2048), out_dim=2048, use_bn=True, last_bn=True)
  c.predictor.update(hidden_dims=(512,), out_dim=2048, use_bn=True, last_bn=False)
  c.batch_size = 512
  c.total_epochs = 100.0
  c.optim.update(
    name="sgd",
    base_lr=0.05,
    lr_scaling="linear",
    weight_decay=1e-4,
    momentum=0.9,
    warmup_epochs=0.0,
  )
  c.method_args.update(stop_gradient=True)
  c.log_every_steps = 100
  c.checkpoint_every_steps = 5000
  c.eval_every_epochs = 10.0
  c.knn.batch_size = 1024
  if preset == "paper":
    pass
  elif preset == "cpu":
    c.dataset, c.eval_split, c.cache = "synthetic", "test", True
    c.image_size = 32
    c.aug = config_base.aug_config(32, color_strength=0.5, blur_prob=0.5, crop_area_min=0.2)
    c.model.update(name="resnet_tiny", stem="imagenet")
    c.head.update(hidden_dims=(256,), out_dim=64)
    c.predictor.update(hidden_dims=(16,), out_dim=64)
    c.batch_size = 64
    c.total_steps = 20
    c.optim.update(name="adamw", base_lr=1e-3, lr_scaling="none", weight_decay=1e-4)
    c.knn.update(batch_size=256, k=20)
    c.eval_every_epochs = 0.0
  else:
    raise ValueError(f"Unknown preset {preset!r} for simsiam_imagenet.py: use paper or cpu.")
  return c
