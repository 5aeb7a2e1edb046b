"""Every field of a pre-training run with its default; every configs/*.py pre-training recipe
starts from `base_config()` and names only what it changes.

The fields of a linear-evaluation or fine-tuning run (a different run kind, whose data fields
default to "the pre-training run's value") are in `evaluation.eval_config`; the `sweep` group of a
batch-size sweep is `sweep()` below.
"""

import ml_collections

from contrastive_jax.config_lib import augment, clip, evaluation


def base_config() -> ml_collections.ConfigDict:
  """A pre-training run: SimCLR, ResNet-18 (CIFAR stem) on CIFAR-10, LARS, 100 epochs."""
  c = ml_collections.ConfigDict()
  c.mode = "pretrain"  # pretrain | linear_eval | finetune | sweep | export | embed
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
  c.aug = augment.view()
  # The second view's config; None: both views use `aug`.
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
  c.model.update(pool="cls", posemb="learn")  # ViTs (models/vit.py): cls | mean, learn | sincos2d
  c.head = ml_collections.ConfigDict(
    dict(hidden_dims=(2048,), out_dim=128, last_bn=True, use_bn=True, last_bn_scale=False)
  )  # last_bn_scale: the output BN learns a scale (SimCLR v2's projector); never an offset
  c.predictor = ml_collections.ConfigDict(
    dict(hidden_dims=(512,), out_dim=128, last_bn=False, use_bn=True, last_bn_scale=False)
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
      eps=1e-8,  # AdamW's epsilon (CLIP: 1e-6)
      grad_clip_norm=0.0,
      clip_lr=False,  # LARS: solo-learn's LARS, the layer's rate clipped at the LR (optim_lars.py)
      trust_ratio_exclude=("probe",),  # top-level subtrees LARS never adapts (SimCLR's rule)
    )
  )
  # {path: {base_lr, weight_decay, fixed_lr}}: a parameter subtree's own rate or weight decay
  # (optim.param_groups), e.g. SimSiam's fixed predictor LR {'predictor': {'fixed_lr': True}}.
  c.optim.param_groups = ml_collections.ConfigDict()
  # Method; each method's own fields are added by `methods.configure`.
  c.method_args = ml_collections.ConfigDict(dict(temperature=0.5))
  c.method_args.loss_tile_size = ml_collections.FieldReference(None, field_type=int)
  # Image-text methods (CLIP, SigLIP): captions, text tower, zero-shot monitor (config_lib/clip.py).
  c.text = clip.text()
  c.text_model = clip.text_model()
  c.zero_shot = clip.zero_shot()
  # Large batches on few devices: embed in chunks of this many images per device (0 = off).
  c.grad_cache_chunk = 0
  # kNN monitor; bank_split / test_split None -> train_split / eval_split.
  c.knn = ml_collections.ConfigDict(dict(k=200, temperature=0.1, batch_size=512))
  c.knn.bank_split = ml_collections.FieldReference(None, field_type=str)
  c.knn.test_split = ml_collections.FieldReference(None, field_type=str)
  # Fault tolerance: stop on a non-finite loss, or skip such steps up to this many times.
  c.nan_policy = "stop"  # stop | skip
  c.max_skipped_steps = 10
  # On-demand profiling: a jax.profiler trace of steps (start, start + num] into W/tensorboard
  # (TensorBoard's profile tab); num 0 = off.
  c.profile_start_step = 10
  c.profile_num_steps = 0
  # mode=export / embed of a pre-trained workdir with this config (config_lib/evaluation.py).
  evaluation.add_export_embed(c)
  return c


def sweep(**overrides) -> ml_collections.ConfigDict:
  """The `sweep` group of mode='sweep' (read by the batch-size scaling harness).

  Args:
    **overrides: fields to change (see the harness's docstring for each field's meaning).

  Returns:
    The group, SimCLR's Appendix B.1 rules by default: base LR 0.3 x B/256 or 0.075 x sqrt(B).
  """
  s = ml_collections.ConfigDict(
    dict(
      action="run",  # run (here, one after another) | print (one launch command per run)
      config_file="",  # 'configs/x.py:preset' of this config, for the printed commands
      batch_sizes=(256,),
      epochs=(100.0,),
      lr_scalings=("linear", "sqrt"),
      temperatures=(0.5,),
      base_lr=ml_collections.ConfigDict(dict(linear=0.3, sqrt=0.075)),
      max_device_batch=0,  # per-device rows above which a run uses the gradient cache (0: never)
      num_devices=0,  # devices of the target machine for 'print' (0: this machine's count)
      launcher="python -m contrastive_jax.main",
    )
  )
  s.update(overrides)
  return s
