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

from contrastive_jax.config_lib import augment, base, datasets, methods, presets

PRESETS = ("paper", "paper_300ep", "cpu")


def get_config(preset: str = "paper"):
  presets.check(preset, __file__, PRESETS)
  c = methods.configure(base.base_config(), "moco_v3", temperature=1.0)
  datasets.imagenet2012(c)
  c.aug = augment.view(224, blur_prob=1.0)
  c.aug2 = augment.view(224, blur_prob=0.1, solarize_prob=0.2)
  c.head.update(hidden_dims=(4096, 4096), out_dim=256)
  c.predictor.update(hidden_dims=(4096,), out_dim=256)
  c.update(batch_size=4096, total_epochs=100.0)
  c.optim.update(base_lr=0.6, weight_decay=1e-6)
  if preset == "paper_300ep":
    c.update(total_epochs=300.0, eval_every_epochs=25.0)
    c.optim.update(base_lr=0.3, weight_decay=1.5e-6)
  elif preset == "cpu":
    presets.smoke(c)
    c.method_args.temperature = 0.2
  return c
