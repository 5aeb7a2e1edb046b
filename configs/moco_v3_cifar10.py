r"""MoCo v3 on CIFAR-10 (Chen, Xie & He 2021).

Online encoder -> projector -> predictor, momentum target (encoder + projector; momentum 0.99 -> 1
on a cosine over the run), symmetric InfoNCE with in-batch negatives of the whole global batch (all
devices), temperature 0.2, no queue. BatchNorm is synchronised over all devices.

Presets (`--config=configs/moco_v3_cifar10.py:PRESET`):
  cpu    (default) the same tiny ResNet, AdamW and 3-epoch schedule as simclr_cifar10.py:cpu.
  paper  solo-learn's CIFAR recipe: ResNet-18 (CIFAR stem), projector 4096-256 (BN on the output),
         predictor 4096-256, batch 256, LARS lr 0.3 x B/256, weight decay 1e-5, 10 warm-up epochs,
         1000 epochs, T 0.2: solo-learn reports 93.1% linear top-1 on CIFAR-10.

Launch:
  python -m contrastive_jax.main --config=configs/moco_v3_cifar10.py:cpu --workdir=runs/moco_v3_cpu
  python -m contrastive_jax.main --config=configs/moco_v3_cifar10.py:paper --workdir=runs/moco_v3_c10
"""

from contrastive_jax import config_base


def get_config(preset: str = "cpu"):
  c = config_base.base_config()
  c.method = "moco_v3"
  c.dataset = "cifar10"
  c.image_size = 32
  c.aug = config_base.aug_config(32, color_strength=0.5, blur_prob=0.0)
  c.aug2 = config_base.aug_config(32, color_strength=0.5, blur_prob=0.0, solarize_prob=0.2)
  c.head.update(last_bn=True)
  c.predictor.update(last_bn=False)
  c.method_args.update(temperature=0.2, momentum=0.99, momentum_final=1.0)
  if preset == "cpu":
    config_base.apply_cpu_preset(c)
    c.predictor.update(hidden_dims=(256,), out_dim=64)
  elif preset == "paper":
    c.model.name = "resnet18"
    c.head.update(hidden_dims=(4096,), out_dim=256)
    c.predictor.update(hidden_dims=(4096,), out_dim=256)
    c.batch_size = 256
    c.total_epochs = 1000.0
    c.optim.update(
      name="lars", base_lr=0.3, lr_scaling="linear", weight_decay=1e-5, warmup_epochs=10.0
    )
    c.eval_every_epochs = 50.0
  else:
    raise ValueError(f"Unknown preset {preset!r} for moco_v3_cifar10.py: use cpu or paper.")
  return c
