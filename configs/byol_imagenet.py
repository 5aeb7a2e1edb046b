r"""BYOL on ImageNet (Grill et al. 2020), ResNet-50.

Projector and predictor 4096-256 (BN in the hidden layer), target tau 0.996 -> 1 (cosine over the
run), batch 4096, LARS lr 0.2 x B/256 (= 3.2), weight decay 1.5e-6, 10 warm-up epochs, asymmetric
views (blur 1.0 / 0.1, solarisation 0 / 0.2, colour jitter 0.4/0.4/0.2/0.1 p=0.8). Published linear
top-1: 74.3% after 1000 epochs (`paper`), 72.5% after 300 (`paper_300ep`). `cpu`: a tiny ResNet on
the offline 'synthetic' dataset.

Launch on a TPU pod (every worker):
  ./run.sh train --config=configs/byol_imagenet.py:paper --workdir=/gcs/$BUCKET/byol_in \
    --config.data_dir=gs://$BUCKET/tensorflow_datasets
  python -m contrastive_jax.main --config=configs/byol_imagenet.py:cpu --workdir=runs/byol_in_cpu
"""

from contrastive_jax import config_base


def get_config(preset: str = "paper"):
  c = config_base.base_config()
  c.method = "byol"
  c.dataset = "imagenet2012"
  c.eval_split = "validation"
  c.image_size = 224
  c.shuffle_buffer = 50_000
  c.cache = False
  c.aug = config_base.aug_config(224, color_strength=0.5, blur_prob=1.0)
  c.aug2 = config_base.aug_config(224, color_strength=0.5, blur_prob=0.1, solarize_prob=0.2)
  c.model.update(name="resnet50", width=1.0, stem="imagenet", norm="batch")
  c.head.update(hidden_dims=(4096,), out_dim=256, use_bn=True, last_bn=False)
  c.predictor.update(hidden_dims=(4096,), out_dim=256, use_bn=True, last_bn=False)
  c.batch_size = 4096
  c.total_epochs = 1000.0
  c.optim.update(
    name="lars", base_lr=0.2, lr_scaling="linear", weight_decay=1.5e-6, warmup_epochs=10.0
  )
  c.method_args.update(momentum=0.996, momentum_final=1.0)
  c.log_every_steps = 100
  c.checkpoint_every_steps = 2500
  c.eval_every_epochs = 50.0
  c.knn.batch_size = 1024
  if preset == "paper":
    pass
  elif preset == "paper_300ep":
    c.total_epochs = 300.0
    c.optim.update(base_lr=0.3, weight_decay=1e-6)
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
    c.optim.update(
      name="adamw", base_lr=1e-3, lr_scaling="none", weight_decay=1e-4, warmup_epochs=0.0
    )
    c.knn.update(batch_size=256, k=20)
    c.eval_every_epochs = 0.0
  else:
    raise ValueError(
      f"Unknown preset {preset!r} for byol_imagenet.py: use paper, paper_300ep or cpu."
    )
  return c
