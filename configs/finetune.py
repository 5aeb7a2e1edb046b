r"""Fine-tuning of a pre-trained encoder with a new linear head on a class-balanced fraction of the labels.

The whole network (encoder, plus the first projection layer with from_projection_layer=1 as in
SimCLRv2) is trained with crop + flip views, Nesterov SGD (or LARS) and a cosine schedule, in the
pre-training step (jit + shard_map over the mesh, synchronised BatchNorm). The labelled subset's ids
are written to W2/subset_{pct}pct_seed{seed}.txt and re-read when present. On ImageNet
(config.dataset imagenet2012) the 1 % / 10 % fractions use TFDS's `imagenet2012_subset/1pct` and
`/10pct` splits instead (SimCLR's splits).

Presets (`--config=configs/finetune.py:PRESET`):
  cpu    (default) 10 % of the labels, batch 128, 10 epochs, Nesterov SGD lr 0.1 (cosine, no weight decay).
  paper  SimCLR's semi-supervised recipe (Chen et al. 2020, Appendix B.5): Nesterov SGD, lr 0.05 x B/256,
         no warmup, no weight decay, crop + flip only; 30 epochs for 10 % of the labels (use
         --config.finetune.epochs=60 for 1 %). Batch 1024 here (4096 in the paper).

Launch:
  python -m contrastive_jax.main --config=configs/finetune.py:cpu --config.label_fraction=0.01 \
      --config.pretrained_workdir=runs/simclr_cifar10_cpu --workdir=runs/simclr_cifar10_cpu_ft1
"""

from contrastive_jax.config_lib import evaluation, presets

PRESETS = ("cpu", "paper")


def get_config(preset: str = "cpu"):
  presets.check(preset, __file__, PRESETS)
  c = evaluation.eval_config("finetune")
  c.label_fraction = 0.1
  if preset == "cpu":
    c.finetune.update(lr=0.1, batch_size=128, epochs=10)
  else:  # SimCLR's semi-supervised recipe (Nesterov SGD, no weight decay or warm-up).
    c.finetune.update(lr=0.05, lr_scaling="linear", batch_size=1024, epochs=30)
  return c
