r"""CLIP ViT-B/32 on COCO Captions (TFDS coco_captions), the CLIP paper's optimiser, a pod-sized batch.

Presets (`--config=configs/clip_coco.py:PRESET`):
  paper  ViT-B/32 image tower (224 px: a 7x7 grid of 32-px patches, class-token pooling) and CLIP's text tower
         (width 512, 12 blocks, 8 heads, 77 tokens, causal, pooled at end-of-text), joint width 512,
         global batch 32,768 over a pod (e.g. a v4-256: 128 images per chip), AdamW as CLIP trains
         it (Radford et al. 2021, Table 20: lr 5e-4, beta1 0.9, beta2 0.98, eps 1e-6, decoupled
         weight decay 0.2, none on gains, biases and the logit scale), warm-up then cosine,
         bfloat16 compute, logit scale 1/0.07 clamped at 100. Train on 'train+restval' (113,287
         images, one of their 5 captions drawn per step; at this batch an epoch is 3 steps, so the
         100 epochs are 345 steps with 10 warm-up epochs), Recall@K on the 5,000 test images (first
         caption each), zero-shot on ImageNet validation with CLIP's 80 templates when
         imagenet2012 is prepared in data_dir (else pass --config.zero_shot.dataset=''). COCO is
         far smaller than CLIP's 400M pairs: expect retrieval to be useful and zero-shot ImageNet
         to be weak; not yet run here.
  cpu    a smoke test of the same code on the offline synthetic compositional captions (20 steps of
         the CPU-sized towers, batch 64).

Launch on a TPU pod (every worker; coco_captions prepared with `tfds build coco_captions`):
  ./run.sh train --config=configs/clip_coco.py:paper --workdir=gs://$BUCKET/clip_coco \
    --config.data_dir=gs://$BUCKET/tensorflow_datasets
  fewer chips: add --config.grad_cache_chunk=32 (the exact gradient cache keeps the 32k batch)
  python -m contrastive_jax.main --config=configs/clip_coco.py:cpu --workdir=runs/clip_coco_cpu
"""

from contrastive_jax.config_lib import augment, base, presets
from contrastive_jax.config_lib import clip as clip_lib

PRESETS = ("paper", "cpu")


def get_config(preset: str = "paper"):
  presets.check(preset, __file__, PRESETS)
  c = clip_lib.configure(base.base_config(), "clip")
  c.update(dataset="coco_captions", train_split="train+restval", eval_split="test")
  c.update(image_size=224, cache=False, shuffle_buffer=50_000)
  c.text.update(source="tfds", image_feature="image", text_feature="captions/text")
  c.model.update(name="vit_b32", dtype="bfloat16")
  c.aug = augment.crop_flip(224, crop_area_min=0.9)  # open_clip's RandomResizedCrop(0.9, 1)
  c.aug.flip = False
  c.update(batch_size=32_768, total_epochs=100.0, eval_every_epochs=25.0)
  c.update(log_every_steps=10, checkpoint_every_steps=50)
  c.optim.update(base_lr=5e-4, warmup_epochs=10.0)
  c.zero_shot.update(
    dataset="imagenet2012", split="validation", templates="imagenet", retrieval_split="test"
  )
  c.zero_shot.batch_size = 1024
  if preset == "cpu":
    clip_lib.smoke(c)
  return c
