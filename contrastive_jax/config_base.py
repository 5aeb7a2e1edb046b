"""The full set of config fields with defaults; every configs/*.py starts from base_config()."""

import ml_collections


def aug_config(
  image_size: int = 32,
  *,
  color_strength: float = 0.5,
  blur_prob: float = 0.0,
  crop_area_min: float = 0.08,
  solarize_prob: float = 0.0,
) -> ml_collections.ConfigDict:
  """SimCLR's view: random resized crop, flip, colour jitter (strength s, p=0.8), grayscale, blur."""
  return ml_collections.ConfigDict(
    dict(
      image_size=image_size,
      crop_area_min=crop_area_min,
      crop_area_max=1.0,
      aspect_min=3 / 4,
      aspect_max=4 / 3,
      flip=True,
      color_strength=color_strength,
      color_prob=0.8,
      gray_prob=0.2,
      blur_prob=blur_prob,
      blur_sigma_min=0.1,
      blur_sigma_max=2.0,
      solarize_prob=solarize_prob,
    )
  )


def base_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.mode = "pretrain"  # pretrain | linear_eval | finetune
  c.method = "simclr"  # a module in contrastive_jax/methods/
  c.seed = 0
  # Data (TFDS). data_dir None -> $TFDS_DATA_DIR -> ../shared/tensorflow_datasets if present.
  c.dataset = "cifar10"
  c.data_dir = ml_collections.FieldReference(None, field_type=str)
  c.train_split = "train"
  c.eval_split = "test"
  c.image_size = 32
  c.shuffle_buffer = 10_000
  c.cache = True  # keep encoded records in memory (small datasets)
  c.aug = aug_config()
  c.aug2 = ml_collections.FieldReference(None, field_type=ml_collections.ConfigDict)
  # Schedule. total_steps > 0 wins over total_epochs.
  c.batch_size = 512  # global, over all devices and processes
  c.total_epochs = 100.0
  c.total_steps = -1
  c.log_every_steps = 50
  c.checkpoint_every_steps = 1000
  c.keep_checkpoints = 3
  c.eval_every_epochs = 10.0  # kNN monitor; <= 0: only at the end
  c.eval_at_start = False  # kNN of the random-init encoder -> knn_top1_random_init
  # Model.
  c.model = ml_collections.ConfigDict(
    dict(name="resnet18", width=1.0, stem="cifar", norm="batch", dtype="float32")
  )
  c.head = ml_collections.ConfigDict(
    dict(hidden_dims=(2048,), out_dim=128, last_bn=True, use_bn=True)
  )
  c.predictor = ml_collections.ConfigDict(
    dict(hidden_dims=(512,), out_dim=128, last_bn=False, use_bn=True)
  )
  # Optimiser.
  c.optim = ml_collections.ConfigDict(
    dict(
      name="lars",
      base_lr=0.3,
      lr_scaling="linear",
      weight_decay=1e-6,
      momentum=0.9,
      nesterov=False,
      warmup_epochs=10.0,
      trust_coefficient=0.001,
      end_lr_factor=0.0,
      b1=0.9,
      b2=0.999,
      grad_clip_norm=0.0,
    )
  )
  # Method.
  c.method_args = ml_collections.ConfigDict(dict(temperature=0.5, loss_tile_size=None))
  c.method_args.loss_tile_size = ml_collections.FieldReference(None, field_type=int)
  # Large batches on few devices: embed in chunks of this many images per device (0 = off).
  c.grad_cache_chunk = 0
  # kNN monitor.
  # kNN monitor; bank_split / test_split None -> train_split / eval_split.
  c.knn = ml_collections.ConfigDict(dict(k=200, temperature=0.1, batch_size=512))
  c.knn.bank_split = ml_collections.FieldReference(None, field_type=str)
  c.knn.test_split = ml_collections.FieldReference(None, field_type=str)
  # Fault tolerance: stop on a non-finite loss, or skip such steps up to this many times.
  c.nan_policy = "stop"  # stop | skip
  c.max_skipped_steps = 10
  return c


def apply_cpu_preset(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """The CPU-sized run every method's `cpu` preset shares, so methods compare on equal terms.

  A 0.3M-parameter ResNet (widths 16-32-64-128, one block per stage), a 256-64 head, batch 256,
  3 epochs of AdamW, crops of at least 20% of the image (both views), kNN at step 0 and at the end.
  Methods with a predictor set its widths after this call.
  """
  c.model.name = "resnet_tiny"
  c.head.update(hidden_dims=(256,), out_dim=64)
  c.batch_size = 256
  c.total_epochs = 3.0
  c.optim.update(
    name="adamw", base_lr=2e-3, lr_scaling="none", weight_decay=1e-4, warmup_epochs=0.2
  )
  c.aug.crop_area_min = 0.2
  if c.aug2 is not None:
    c.aug2.crop_area_min = 0.2
  c.log_every_steps = 20
  c.checkpoint_every_steps = 200
  c.eval_every_epochs = 0.0
  c.eval_at_start = True
  return c
