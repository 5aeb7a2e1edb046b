r"""CLIP on CIFAR-10: images paired with captions from CLIP's 18 CIFAR-10 prompt templates over the
class names ("a blurry photo of a cat."), zero-shot classification of the test split as the monitor.

Presets (`--config=configs/clip_cifar10.py:PRESET`):
  cpu    (default) vit_mini8 image tower (4x4 patches of 8 px, width 128, 4 blocks) and a 2-block
         width-128 text tower over 16 tokens, joint width 128, batch 256, 3 epochs (585 steps) of
         CLIP's AdamW (beta2 0.98, eps 1e-6, weight decay 0.2 on kernels only), lr 1e-3, 0.2 warm-up
         epochs then cosine; zero-shot top-1 on the 10,000 test images at step 0 and at the end,
         i2t/t2i Recall@1/5/10 on 1,000 held-out test pairs. Sized for a 2-core CPU in under 15
         minutes (about 1.05 s of CPU time per step measured under load: 5-10 minutes of training on
         an idle 2-core machine, plus two evaluations). results.json: zero_shot_top1,
         zero_shot_top1_random_init, i2t_recall@1, t2i_recall@1 (see README for what it reached).
  paper  CLIP's recipe at CIFAR scale: ViT-S with 4x4 patches (64 tokens), CLIP's text tower (width
         512, 12 blocks, 8 heads, 77 tokens), joint width 512, batch 1024, AdamW lr 1e-3 (CLIP's
         beta2 0.98, eps 1e-6, wd 0.2), 5 warm-up epochs + cosine, 200 epochs, bfloat16 compute,
         logit scale from 1/0.07 clamped at 100. Not yet run here: no published number to match.

Launch:
  ./run.sh train --config=configs/clip_cifar10.py:cpu --workdir=runs/clip_cpu
  python -m contrastive_jax.main --config=configs/clip_cifar10.py:paper --workdir=gs://bucket/clip_c10
Override any field: --config.batch_size=512 --config.method_args.loss_tile_size=1024
  (the tiled softmax), --config.grad_cache_chunk=64 (batches beyond memory, exact for ViT towers).
"""

from contrastive_jax.config_lib import augment, base, datasets, presets
from contrastive_jax.config_lib import clip as clip_lib

PRESETS = ("cpu", "paper")


def get_config(preset: str = "cpu", method: str = "clip"):
  presets.check(preset, __file__, PRESETS)
  c = clip_lib.configure(base.base_config(), method)
  datasets.cifar10(c)
  c.text.update(source="templates", templates="cifar10")
  c.zero_shot.retrieval_split = "test"
  if preset == "cpu":
    clip_lib.cpu(c)
  else:
    c.model.update(name="vit_s4", dtype="bfloat16")
    c.aug = augment.crop_flip(32, crop_area_min=0.5)
    c.method_args.embed_dim = 512
    c.update(batch_size=1024, total_epochs=200.0, eval_every_epochs=20.0)
    c.optim.update(base_lr=1e-3, warmup_epochs=5.0)
  return c
