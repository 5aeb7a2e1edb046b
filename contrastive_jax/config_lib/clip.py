"""Config pieces of the image-text methods (CLIP, SigLIP): the text fields every config holds
(`text`, `text_model`, `zero_shot`, defaults in base_config), the methods' own method_args and
CLIP's optimiser (`configure`), and the CPU-sized image-text run (`cpu`).
"""

import ml_collections

from contrastive_jax.config_lib import augment

_INT = dict(field_type=int)


def text() -> ml_collections.ConfigDict:
  """Where captions come from and how they are tokenized (data/image_text.py, data/tokenizer.py).

  source '' (image-only runs) | 'templates' | 'tfds' | 'folder' | 'synthetic'.
  """
  return ml_collections.ConfigDict(
    dict(
      source="",
      tokenizer="clip_bpe",
      context_length=77,  # CLIP's
      templates="simple",  # prompt templates of the 'templates' source (data/captions.py)
      image_feature="image",  # TFDS feature paths of the 'tfds' source ('/' for nesting)
      text_feature="captions/text",
    )
  )


def text_model(width: int = 512, depth: int = 12, heads: int = 8) -> ml_collections.ConfigDict:
  """The text tower (models/text.py); the defaults are CLIP ViT-B/32's (63M parameters)."""
  return ml_collections.ConfigDict(dict(width=width, depth=depth, heads=heads, mlp_ratio=4.0))


def zero_shot() -> ml_collections.ConfigDict:
  """The zero-shot monitor (protocols/image_text.py); None fields default as documented there."""
  z = ml_collections.ConfigDict(dict(batch_size=512, recall_ks=(1, 5, 10)))
  z.dataset = ml_collections.FieldReference(None, field_type=str)  # None: the training data's
  z.split = ml_collections.FieldReference(None, field_type=str)  # None: config.eval_split
  z.templates = ml_collections.FieldReference(None, field_type=str)  # None: text.templates
  z.retrieval_split = ""  # held-out pairs of the caption source for Recall@K ('' = none)
  return z


def configure(c: ml_collections.ConfigDict, name: str, **method_args) -> ml_collections.ConfigDict:
  """Sets `c.method = name` ('clip' | 'siglip'), its method_args and CLIP's optimiser.

  CLIP (Radford et al. 2021, Sec. 2.5 and Table 20): AdamW, beta2 0.98, eps 1e-6, decoupled weight
  decay 0.2 on all weights but gains, biases and the logit scale (optim.weight_decay_mask: only
  kernels and embeddings of rank >= 2), warm-up then cosine; logit scale initialised to 1/0.07 and
  clamped at 100. SigLIP (Zhai et al. 2023): t' = log 10, b = -10.
  """
  if name not in ("clip", "siglip"):
    raise ValueError(f"config_lib.clip.configure: {name!r} is not an image-text method.")
  c.method = name
  c.model.update(pool="cls")
  args = dict(embed_dim=512)
  if name == "clip":
    args.update(init_logit_scale=1 / 0.07, max_logit_scale=100.0)
  else:
    args.update(init_logit_scale=10.0, init_logit_bias=-10.0, sigmoid_loss="ring")
  c.method_args.update(args)
  if name == "siglip" and "loss_chunk_size" not in c.method_args:
    c.method_args.loss_chunk_size = ml_collections.FieldReference(None, **_INT)
  c.method_args.update(method_args)
  c.optim.update(
    name="adamw", b1=0.9, b2=0.98, eps=1e-6, weight_decay=0.2, lr_scaling="none", base_lr=5e-4
  )
  return c


def cpu(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """The CPU-sized image-text run of the CIFAR-10 configs (2 cores, under 15 minutes).

  Image tower vit_mini8 (width 128, 4 blocks, 4x4 patches of 8 px + class token: 0.8M parameters),
  text tower width 128 with 2 blocks over 16 tokens (6.7M parameters, nearly all the token
  embedding of the 49,408-token vocabulary), joint width 128, batch 256, 3 epochs, crops of at least
  half the image and flips; zero-shot on CIFAR-10 test at step 0 and at the end, Recall@K on 1000
  held-out test pairs. (vit_mini4, 8x8 patches, costs 3.6x the CPU time per step.)
  """
  c.model.update(name="vit_mini8", pool="cls", dtype="float32")
  c.text_model.update(width=128, depth=2, heads=4)
  c.text.context_length = 16  # CIFAR-10 prompts are at most 13 tokens with start and end
  c.method_args.embed_dim = 128
  c.aug = augment.crop_flip(c.image_size, crop_area_min=0.5)
  c.batch_size = 256
  c.total_epochs = 3.0
  c.optim.update(base_lr=1e-3, warmup_epochs=0.2)
  c.zero_shot.update(batch_size=512, retrieval_split="test[:1000]")
  c.log_every_steps = 20
  c.checkpoint_every_steps = 200
  c.eval_every_epochs = 0.0
  c.eval_at_start = True
  return c


def smoke(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """20 steps of `cpu`'s towers on the synthetic compositional captions (no download): the `cpu`
  preset of recipes whose data is not on this machine (COCO, ImageNet)."""
  cpu(c)
  c.update(dataset="synthetic_captions", train_split="train", eval_split="test", image_size=32)
  c.cache = True
  c.text.source = "synthetic"
  c.aug = augment.crop_flip(32, crop_area_min=0.5)
  c.aug.flip = False  # the captions say left and right
  c.batch_size = 64
  c.total_steps = 20
  c.zero_shot.update(dataset=None, split=None, templates="simple", retrieval_split="test")
  return c
