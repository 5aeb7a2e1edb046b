r"""MoCo v2 on ImageNet (Chen et al. 2020, "Improved baselines with momentum contrastive learning").

ResNet-50, MLP projector 2048-128 without BatchNorm, queue of 65,536 keys, key-encoder momentum
0.999, temperature 0.2, batch 256, SGD lr 0.03 x B/256 with momentum 0.9, weight decay 1e-4, cosine
schedule, MoCo v2 augmentation (crop 0.2-1, colour jitter 0.4/0.4/0.4/0.1 p=0.8, grayscale 0.2, blur
p=0.5). BatchNorm is synchronised over all devices in both encoders, which removes the need for
MoCo's shuffled BN. Published linear top-1: 67.5% after 200 epochs (`paper`), 71.1% after 800
(`paper_800ep`). `cpu`: a tiny ResNet on the offline 'synthetic' dataset (a smoke test of the whole
loop).

Launch on a TPU pod (every worker):
  ./run.sh train --config=configs/moco_v2_imagenet.py:paper --workdir=gs://$BUCKET/moco_v2_in \
    --config.data_dir=gs://$BUCKET/tensorflow_datasets
  python -m contrastive_jax.main --config=configs/moco_v2_imagenet.py:cpu --workdir=runs/moco_v2_in_cpu
"""

from contrastive_jax.config_lib import augment, base, datasets, methods, presets

PRESETS = ("paper", "paper_800ep", "cpu")


def get_config(preset: str = "paper"):
  presets.check(preset, __file__, PRESETS)
  c = methods.configure(base.base_config(), "moco_v2", queue_size=65536, momentum=0.999)
  datasets.imagenet2012(c)
  # MoCo v2's aug_plus (main_moco.py): RandomResizedCrop(224, scale=(0.2, 1)), no 10% floor.
  c.aug = augment.view(224, blur_prob=0.5, crop_area_min=0.2, crop_min_object_covered=0.0)
  c.head.update(hidden_dims=(2048,), out_dim=128)
  c.update(batch_size=256, total_epochs=200.0, checkpoint_every_steps=5000)
  c.optim.update(name="sgd", base_lr=0.03, weight_decay=1e-4, warmup_epochs=0.0)
  if preset == "paper_800ep":
    c.update(total_epochs=800.0, eval_every_epochs=50.0)
  elif preset == "cpu":
    presets.smoke(c)
    c.method_args.queue_size = 1024
  return c
