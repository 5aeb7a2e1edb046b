r"""SigLIP on CIFAR-10: CLIP's CIFAR-10 set-up (configs/clip_cifar10.py) with the pairwise sigmoid
loss computed around the ring of devices (losses_ring.py), logit scale t' = log 10 and bias -10.

Presets (`--config=configs/siglip_cifar10.py:PRESET`):
  cpu    (default) the same CPU run as clip_cifar10.py's cpu preset (vit_mini8 + a 2-block text
         tower, batch 256, 3 epochs of CLIP's AdamW, zero-shot on CIFAR-10 test at step 0 and at the
         end, Recall@K on 1,000 held-out pairs), so the two losses compare on equal terms; under 15
         minutes on a 2-core CPU.
  paper  clip_cifar10.py's paper preset with SigLIP's optimiser (Zhai et al. 2023, Sec. 4: AdamW
         lr 1e-3, beta2 0.95, weight decay 1e-4). Not yet run here.

Launch:
  ./run.sh train --config=configs/siglip_cifar10.py:cpu --workdir=runs/siglip_cpu
  python -m contrastive_jax.main --config=configs/siglip_cifar10.py:paper --workdir=gs://bucket/siglip_c10
Override any field: --config.method_args.sigmoid_loss=dense (one all-gather instead of the ring),
  --config.method_args.loss_chunk_size=256 (texts scored at a time within a device).
"""

from configs import clip_cifar10
from contrastive_jax.config_lib import presets

PRESETS = clip_cifar10.PRESETS


def get_config(preset: str = "cpu"):
  presets.check(preset, __file__, PRESETS)
  c = clip_cifar10.get_config(preset, method="siglip")
  if preset == "paper":
    c.optim.update(b2=0.95, weight_decay=1e-4, base_lr=1e-3)
  return c
