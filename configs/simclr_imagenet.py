r"""SimCLR on ImageNet (ILSVRC-2012), the paper's main setting.

ResNet-50 (ImageNet stem), 3-layer projection head (SimCLR v2 style: 2048-2048-128), batch 4096,
LARS with lr 0.3 x B/256 (= 4.8), weight decay 1e-6, 10 warm-up epochs then cosine, temperature 0.1,
colour strength 1.0 and Gaussian blur (p=0.5) at 224x224. Presets: `100ep` (default, the paper's
ablation budget: ~64.5% linear top-1 at batch 4096 in its Figure 9) and `1000ep` (69.3% linear top-1
in the paper's Table 6 for ResNet-50 1x), `cpu` (a smoke-sized run on imagenette-like data).

Launch on a Cloud TPU VM pod (same command on every worker, e.g. v3-128):
  gcloud compute tpus tpu-vm ssh $TPU --worker=all --command="cd contrastive_jax && \
    ./run.sh train --config=configs/simclr_imagenet.py:100ep --workdir=/gcs/$BUCKET/simclr_in_100ep"
The data must be prepared with `tfds build imagenet2012` (manual download) into a GCS data_dir:
  --config.data_dir=gs://$BUCKET/tensorflow_datasets
"""

from contrastive_jax import config_base


def get_config(preset: str = "100ep"):
  c = config_base.base_config()
  c.method = "simclr"
  c.dataset = "imagenet2012"
  c.eval_split = "validation"
  c.image_size = 224
  c.shuffle_buffer = 50_000
  c.cache = False
  c.aug = config_base.aug_config(224, color_strength=1.0, blur_prob=0.5)
  c.model.update(name="resnet50", width=1.0, stem="imagenet", norm="batch")
  c.head.update(hidden_dims=(2048, 2048), out_dim=128, last_bn=True)
  c.batch_size = 4096
  c.optim.update(
    name="lars", base_lr=0.3, lr_scaling="linear", weight_decay=1e-6, warmup_epochs=10.0
  )
  c.method_args.temperature = 0.1
  c.log_every_steps = 100
  c.checkpoint_every_steps = 2500
  c.eval_every_epochs = 10.0
  c.knn.batch_size = 1024
  if preset == "100ep":
    c.total_epochs = 100.0
  elif preset == "1000ep":
    c.total_epochs = 1000.0
    c.eval_every_epochs = 50.0
  elif preset == "cpu":
    c.dataset = "imagenette/160px-v2"
    c.image_size = 64
    c.aug = config_base.aug_config(64, color_strength=1.0, blur_prob=0.5)
    c.model.update(name="resnet_tiny", stem="imagenet")
    c.head.update(hidden_dims=(256,), out_dim=64)
    c.batch_size = 64
    c.total_steps = 20
    c.optim.update(
      name="adamw", base_lr=1e-3, lr_scaling="none", weight_decay=1e-4, warmup_epochs=0.0
    )
    c.knn.batch_size = 256
    c.eval_every_epochs = 0.0
  else:
    raise ValueError(f"Unknown preset {preset!r} for simclr_imagenet.py: use 100ep, 1000ep or cpu.")
  return c
