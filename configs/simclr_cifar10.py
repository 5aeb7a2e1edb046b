r"""SimCLR on CIFAR-10.

Presets (`--config=configs/simclr_cifar10.py:PRESET`): cpu    (default) a 0.3M-parameter ResNet
  (widths 16-32-64-128, one block per stage), AdamW, batch 256, a few epochs: the default of
  ./run.sh, sized for a 2-core CPU in under 15 minutes; kNN at step 0 and at the end (see README for
  what it reached). paper  the paper's CIFAR recipe as in google-research/simclr's README: ResNet-18
  with the CIFAR stem, batch 512, LARS lr 1.0 x B/256, weight decay 1e-4, temperature 0.5, colour
  strength 0.5, no blur, 1000 epochs (about 94% linear top-1 in the paper's CIFAR figure with
  ResNet-50; ~91% reported for ResNet-18 in the reference code's README). paper_r50  the same with
  ResNet-50 (CIFAR stem), batch 1024.

Launch:
  python -m contrastive_jax.main --config=configs/simclr_cifar10.py:cpu --workdir=runs/simclr_cpu
  python -m contrastive_jax.main --config=configs/simclr_cifar10.py:paper --workdir=/gcs/bucket/simclr_c10
Override any field: --config.batch_size=1024 --config.method_args.temperature=0.2
"""

from contrastive_jax import config_base


def get_config(preset: str = "cpu"):
  c = config_base.base_config()
  c.method = "simclr"
  c.dataset = "cifar10"
  c.image_size = 32
  c.aug = config_base.aug_config(32, color_strength=0.5, blur_prob=0.0)
  if preset == "cpu":
    config_base.apply_cpu_preset(c)
    c.method_args.temperature = 0.2
  elif preset in ("paper", "paper_r50"):
    c.model.name = "resnet18" if preset == "paper" else "resnet50"
    c.head.hidden_dims = (2048,) if preset == "paper_r50" else (512,)
    c.head.out_dim = 128
    c.batch_size = 512 if preset == "paper" else 1024
    c.total_epochs = 1000.0
    c.optim.update(
      name="lars", base_lr=1.0, lr_scaling="linear", weight_decay=1e-4, warmup_epochs=10.0
    )
    c.method_args.temperature = 0.5
    c.eval_every_epochs = 50.0
  else:
    raise ValueError(
      f"Unknown preset {preset!r} for simclr_cifar10.py: use cpu, paper or paper_r50."
    )
  return c
