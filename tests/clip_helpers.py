"""Tiny image-text configs for the CLIP/SigLIP tests: micro ViT and text tower, synthetic captions."""

import ml_collections

from contrastive_jax.config_lib import augment
from contrastive_jax.config_lib import clip as clip_cfg
from tests import helpers


def tiny_config(method: str = "clip", **overrides) -> ml_collections.ConfigDict:
  """Trains in seconds: vit_micro4 on 16x16 synthetic compositional images, a 1-block text tower."""
  c = helpers.tiny_config(method)
  with c.unlocked():  # siglip adds method_args.loss_chunk_size
    clip_cfg.configure(c, method)
  c.dataset = "synthetic_captions"
  c.text.source = "synthetic"
  c.text.context_length = 16
  c.text_model.update(width=32, depth=1, heads=2)
  c.model.name = "vit_micro4"
  c.method_args.embed_dim = 16
  c.optim.update(base_lr=1e-3, warmup_epochs=0.0, weight_decay=1e-4)
  c.aug = augment.view(16, color_strength=0.0)
  c.aug.update(color_prob=0.0, gray_prob=0.0, flip=False, crop_area_min=0.5)
  c.zero_shot.update(batch_size=64, retrieval_split="test[:64]")
  c.eval_at_start = True
  with c.unlocked():
    for k, v in overrides.items():
      target = c
      *path, last = k.split(".")
      for p in path:
        target = target[p]
      target[last] = v
  return c
