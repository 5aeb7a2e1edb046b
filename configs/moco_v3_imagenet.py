r"""MoCo v3 with ResNet-50 on ImageNet (Chen, Xie & He 2021; facebookresearch/moco-v3 CONFIG.md).

moco/builder.py MoCo_ResNet: projector 2048-4096-256 (two layers, BN on both, the output BN without
affine parameters), predictor 256-4096-256 (no output BN), momentum target 0.99 -> 1 (cosine,
--moco-m-cos), symmetric InfoNCE over the global batch (no queue) with the 2T factor, temperature
1.0 (the ResNet-50 value; 0.2 is the ViT/CIFAR one), batch 4096, LARS lr x B/256, 10 warm-up epochs,
each view through the networks on its own (per-view BN), BYOL's asymmetric augmentation
(main_moco.py: crops of 20-100% (--crop-min=.2), colour jitter 0.4/0.4/0.2/0.1, blur 1.0 / 0.1,
solarize 0 / 0.2). Published linear top-1 (CONFIG.md): 68.9% after 100 epochs (`paper`: lr 0.6,
weight decay 1e-6), 72.8% after 300 (`paper_300ep`: lr 0.3, weight decay 1e-6), 74.6% after 1000
(`paper_1000ep`: lr 0.3, weight decay 1.5e-6, momentum 0.996). `cpu`: tiny ResNet on the offline
'synthetic' dataset.

Launch on a TPU pod (every worker):
  ./run.sh train --config=configs/moco_v3_imagenet.py:paper --workdir=gs://$BUCKET/moco_v3_in \
    --config.data_dir=gs://$BUCKET/tensorflow_datasets
  python -m contrastive_jax.main --config=configs/moco_v3_imagenet.py:cpu --workdir=runs/moco_v3_in_cpu
Every value and its source in the official code: docs/fidelity.md.
"""

from contrastive_jax.config_lib import augment, base, datasets, methods, presets

PRESETS = ("paper", "paper_300ep", "paper_1000ep", "cpu")


def get_config(preset: str = "paper"):
  presets.check(preset, __file__, PRESETS)
  c = methods.configure(base.base_config(), "moco_v3", temperature=1.0)
  datasets.imagenet2012(c)
  asymmetric = dict(crop_area_min=0.2, crop_min_object_covered=0.0, color_saturation=0.2)
  c.aug = augment.view(224, blur_prob=1.0, **asymmetric)
  c.aug2 = augment.view(224, blur_prob=0.1, solarize_prob=0.2, **asymmetric)
  c.head.update(hidden_dims=(4096,), out_dim=256)
  c.predictor.update(hidden_dims=(4096,), out_dim=256)
  c.update(batch_size=4096, total_epochs=100.0)
  c.optim.update(base_lr=0.6, weight_decay=1e-6)
  if preset == "paper_300ep":
    c.update(total_epochs=300.0, eval_every_epochs=25.0)
    c.optim.base_lr = 0.3
  elif preset == "paper_1000ep":
    c.update(total_epochs=1000.0, eval_every_epochs=50.0)
    c.optim.update(base_lr=0.3, weight_decay=1.5e-6)
    c.method_args.momentum = 0.996
  elif preset == "cpu":
    presets.smoke(c)
    c.method_args.temperature = 0.2
  return c
