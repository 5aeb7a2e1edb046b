"""Fine-tuning of a pre-trained encoder (+ optionally its first projection layer) with a new linear head on a
class-balanced labelled fraction of the training split (SimCLR's semi-supervised protocol, Chen et
al. 2020 Sec. 6 / Appendix B.6; SimCLRv2 fine-tunes from the first projection layer, Chen et al.
2020b Sec. 2).

The fine-tune is a small Method (init / loss_fn / embed / post_update, see methods/base.py), so it
runs through the pre-training step, step_lib.make_train_step: jit(shard_map) over the mesh, BatchNorm
statistics synchronised over 'data', the global-mean cross-entropy as the loss. Training views are
the standard crop + flip (the data pipeline's augment ops with colour, grayscale, blur and solarize
off).

Labelled subsets: `balanced_subset` draws round(fraction * n / C) examples per class, seeded; the
list is written to W2/subset_{pct}pct_seed{seed}.txt and re-read when present, so a run repeats
exactly. ImageNet: the SimCLR 1 % / 10 % splits are TFDS's `imagenet2012_subset/1pct` and `/10pct`
(train split) and are used instead of a drawn subset when config.dataset is 'imagenet2012' (prepare
them with `tfds build imagenet2012_subset`; this path is not exercised by the tests here).

This module also holds the augmented training stream used by the 'augmented' linear evaluation.
"""

import logging
import math
import os
import time
from typing import Any
from collections.abc import Iterator

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import tensorflow as tf

from contrastive_jax import optim, sharding
from contrastive_jax import step as step_lib
from contrastive_jax.data import augment, pipeline
from contrastive_jax.evaluators import subsets
from contrastive_jax.methods import base
from contrastive_jax.state import TrainState

_IMAGENET_SUBSETS = {0.01: "1pct", 0.1: "10pct"}


# ----------------------------------------------------------------------------- data


def pct_name(fraction: float) -> str:
  """'1' for 0.01, '10' for 0.1, '0.5' for 0.005 (the {pct} of file names and result keys)."""
  return f"{round(100 * float(fraction), 6):g}"


def split_arrays(data_cfg, split: str) -> tuple[np.ndarray, np.ndarray]:
  """A whole split in memory: uint8 images (n, H, W, C) and int32 labels, in split order (the `index` order of
  pipeline.eval_iterator). Needs fixed-size images (CIFAR, STL-10, synthetic)."""
  if data_cfg.dataset == pipeline.SYNTHETIC:
    return pipeline.synthetic_arrays(split.split("[")[0], pipeline.num_examples(data_cfg, split))
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

  pipeline.dataset_info(
    data_cfg.dataset, pipeline.resolve_data_dir(data_cfg.get("data_dir"))
  )  # clear errors
  builder = tfds.builder(
    data_cfg.dataset, data_dir=pipeline.resolve_data_dir(data_cfg.get("data_dir")), try_gcs=False
  )
  if None in tuple(builder.info.features["image"].shape):
    raise ValueError(
      f"{data_cfg.dataset!r} has variable-size images and cannot be held in memory; use the "
      f"'features' linear mode, or a TFDS subset config for fine-tuning."
    )
  ds = builder.as_dataset(split=split, shuffle_files=False)
  ds = ds.map(lambda ex: (ex["image"], tf.cast(ex["label"], tf.int32))).batch(4096)
  images, labels = [], []
  for im, lb in ds.as_numpy_iterator():
    images.append(im)
    labels.append(lb)
  return np.concatenate(images), np.concatenate(labels)


def crop_flip_aug(image_size: int, crop_area_min: float = 0.08) -> ml_collections.ConfigDict:
  """The standard supervised view: random resized crop + horizontal flip, no colour, blur or solarize."""
  return ml_collections.ConfigDict(
    dict(
      image_size=int(image_size),
      crop_area_min=float(crop_area_min),
      crop_area_max=1.0,
      aspect_min=3 / 4,
      aspect_max=4 / 3,
      flip=True,
      color_strength=0.0,
      color_prob=0.0,
      gray_prob=0.0,
      blur_prob=0.0,
      solarize_prob=0.0,
    )
  )


def augmented_batches(
  ds: tf.data.Dataset,
  num_examples: int,
  *,
  batch_size: int,
  seed: int,
  aug,
  process_index: int = 0,
  shuffle_buffer: int = 50_000,
) -> Iterator[dict]:
  """Endless host batches {'image' float32 (b, S, S, 3), 'label' int32 (b,)} of augmented views.

  Args:
    ds: this process's (uint8 image, label) examples.
    num_examples: how many there are (shuffle buffer size).
    batch_size: rows per process.
    seed: root seed; the shuffle order and the augmentation of stream position p come from (seed,
      process, p).
    aug: view config for augment.simclr_view (e.g. `crop_flip_aug`).
    process_index: folds into the seeds so processes draw different views.
    shuffle_buffer: cap on the shuffle buffer (datasets that do not fit stream through it).
  """
  root = tf.random.experimental.stateless_fold_in(tf.constant([seed, 17], tf.int64), process_index)

  def view(pos, example):
    image, label = example
    image = tf.image.convert_image_dtype(image, tf.float32)
    if image.shape[-1] == 1:
      image = tf.tile(image, [1, 1, 3])
    s = tf.random.experimental.stateless_fold_in(root, pos)
    return {"image": augment.simclr_view(image, s, aug), "label": tf.cast(label, tf.int32)}

  ds = (
    ds.shuffle(
      max(1, min(num_examples, shuffle_buffer)),
      seed=seed * 1000 + process_index,
      reshuffle_each_iteration=True,
    )
    .repeat()
    .enumerate()
  )
  ds = ds.map(view, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  ds = ds.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)
  opts = tf.data.Options()
  opts.deterministic = True
  return ds.with_options(opts).as_numpy_iterator()


def labelled_subset(
  data_cfg, fraction: float, seed: int, workdir: str
) -> tuple[Any, np.ndarray, np.ndarray]:
  """The class-balanced labelled subset of the training split.

  Returns:
    (images uint8 (m, H, W, C), labels (m,), ids (m,) positions in the split); the ids are read from
    W2/subset_{pct}pct_seed{seed}.txt when present, else drawn and written there.
  """
  images, labels = split_arrays(data_cfg, data_cfg.train_split)
  path = os.path.join(workdir, f"subset_{pct_name(fraction)}pct_seed{seed}.txt")
  if fraction >= 1.0:
    ids = np.arange(len(labels), dtype=np.int64)
  elif os.path.exists(path):
    ids = subsets.read_subset(path)
    if ids.size and (ids.min() < 0 or ids.max() >= len(labels)):
      raise ValueError(
        f"{path}: ids out of range for the {len(labels)}-example split {data_cfg.train_split!r}; "
        f"delete the file to draw a new subset."
      )
    logging.info("Re-using the labelled subset %s (%d examples).", path, ids.size)
  else:
    ids = subsets.balanced_subset(labels, fraction, seed)
    if jax.process_index() == 0:
      subsets.write_subset(
        path, ids, fraction=fraction, seed=seed, note=f"{data_cfg.dataset}:{data_cfg.train_split}"
      )
    logging.info(
      "Drew a %d-example class-balanced subset (%s of %s); ids in %s.",
      ids.size,
      fraction,
      data_cfg.dataset,
      path,
    )
  return images[ids], labels[ids], ids


def _imagenet_subset(data_cfg, fraction: float) -> tuple[tf.data.Dataset, int] | None:
  """TFDS's canonical SimCLR label splits for ImageNet (not class-balanced draws; comparable to the papers)."""
  name = _IMAGENET_SUBSETS.get(round(float(fraction), 6))
  if not data_cfg.dataset.startswith("imagenet2012") or name is None:
    return None
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

  full = f"imagenet2012_subset/{name}"
  pipeline.dataset_info(
    full, pipeline.resolve_data_dir(data_cfg.get("data_dir"))
  )  # clear error if missing
  builder = tfds.builder(
    full, data_dir=pipeline.resolve_data_dir(data_cfg.get("data_dir")), try_gcs=False
  )
  split = tfds.even_splits("train", jax.process_count())[jax.process_index()]
  ds = builder.as_dataset(split=split, shuffle_files=True).map(
    lambda ex: (ex["image"], ex["label"])
  )
  return ds, int(builder.info.splits["train"].num_examples)


# ----------------------------------------------------------------------------- the network


class _ProjectionLayer(nn.Module):
  """The first layer of the pre-training projector (Dense -> BN -> ReLU), named as in heads.MLP."""

  dim: int
  use_bn: bool = True
  bn_axis_name: str | None = None

  @nn.compact
  def __call__(self, x, train: bool):
    x = nn.Dense(self.dim, use_bias=not self.use_bn, name="dense0")(x)
    if self.use_bn:
      x = nn.BatchNorm(
        use_running_average=not train,
        momentum=0.9,
        epsilon=1e-5,
        axis_name=self.bn_axis_name if train else None,
        name="bn0",
      )(x)
    return nn.relu(x)


class FinetuneNet(nn.Module):
  """encoder [-> first projection layer] -> Dense(num_classes) (zero init); params 'encoder', 'projector',
  'head'."""

  encoder: nn.Module
  num_classes: int
  proj_dim: int = 0
  proj_use_bn: bool = True
  bn_axis_name: str | None = None

  @nn.compact
  def __call__(self, x, train: bool):
    h = self.encoder(x, train=train)
    if self.proj_dim:
      h = _ProjectionLayer(self.proj_dim, self.proj_use_bn, self.bn_axis_name, name="projector")(
        h, train
      )
    return nn.Dense(self.num_classes, kernel_init=nn.initializers.zeros, name="head")(
      h.astype(jnp.float32)
    )


def create_method(pretrain_cfg, num_classes: int, from_projection_layer: int = 0) -> base.Method:
  """The fine-tune as a Method: loss_fn is the global-mean softmax cross-entropy of the labelled batch."""
  if from_projection_layer not in (0, 1):
    raise ValueError(
      f"config.finetune.from_projection_layer={from_projection_layer}: use 0 (encoder only) or 1 "
      f"(keep the first projection layer, SimCLRv2)."
    )
  head = pretrain_cfg.head
  proj_dim = int(head.hidden_dims[0]) if from_projection_layer and len(head.hidden_dims) else 0
  if from_projection_layer and not proj_dim:
    raise ValueError(
      "config.finetune.from_projection_layer=1 but the pre-training projector has no hidden layer."
    )
  use_bn = bool(head.get("use_bn", True))

  def make(axis):
    return FinetuneNet(
      encoder=base.build_encoder(pretrain_cfg, axis_name=axis),
      num_classes=num_classes,
      proj_dim=proj_dim,
      proj_use_bn=use_bn,
      bn_axis_name=axis,
    )

  net, eval_net = make(base.AXIS), make(None)

  def init(rng, images):
    v = base.init_net(eval_net, rng, images)
    return {**v, "extras": {}}

  def loss_fn(params, state, batch, rng, step):
    del rng, step
    logits, new_stats = base.apply_train(net, params, state.batch_stats, batch["image"])
    loss, acc = base.probe_loss(logits, batch["label"])
    return loss, {
      "batch_stats": new_stats,
      "metrics": {"loss": loss, "train_accuracy": acc},
      "extras_update": None,
    }

  def embed(state, images):  # here: class logits
    return base.apply_eval(eval_net, state.params, state.batch_stats, images)

  return base.Method(name="finetune", init=init, loss_fn=loss_fn, embed=embed)


def transplant(fresh: dict, pretrained: dict, keys=("encoder", "projector")) -> dict:
  """`fresh` with the entries under `keys` taken from `pretrained` (projector: only its first layer)."""
  out = dict(fresh)
  for k in keys:
    if k not in fresh:
      continue
    src = pretrained.get(k, {})
    sub = {name: src[name] for name in fresh[k]} if k == "projector" else src
    want, got = jax.tree.map(jnp.shape, fresh[k]), jax.tree.map(jnp.shape, sub)
    if jax.tree.structure(want) != jax.tree.structure(got) or jax.tree.leaves(
      want
    ) != jax.tree.leaves(got):
      raise ValueError(
        f"Pre-trained '{k}' parameters do not match the fine-tune network's ({got} vs {want})."
      )
    out[k] = sub
  return out


# ----------------------------------------------------------------------------- train + test


def finetune(
  config,
  loaded,
  data_cfg,
  num_classes: int,
  mesh,
  workdir: str,
  writer=None,
  *,
  return_state: bool = False,
):
  """Fine-tunes `loaded` (evaluators.pretrained.Pretrained) on config.label_fraction of the train split.

  The weights of `loaded` are copied, never changed (the train step donates only the copy).

  Args:
    config: evaluation config (label_fraction, seed, eval_batch_size, finetune.*).
    loaded: the pre-trained (or random-init) encoder.
    data_cfg: data fields (evaluators.run.data_config).
    num_classes: classes of the new head.
    mesh: device mesh.
    workdir: W2 (the subset id file goes there).
    writer: optional metrics.MetricWriter for the training curve.
    return_state: also return the fine-tuned TrainState and its Method.

  Returns:
    {'finetune_{pct}pct_top1', '..._top5', '..._time_s', '..._train_time_s', '..._examples', '..._steps'}
    (and (state, method) after it when return_state).
  """
  ft = config.finetune
  fraction = float(config.label_fraction)
  pct = pct_name(fraction)
  seed = int(config.seed)
  t0 = time.time()
  sharding.check_batch_size(int(ft.batch_size), "config.finetune.batch_size")
  pc, pi = jax.process_count(), jax.process_index()
  imnet = _imagenet_subset(data_cfg, fraction)
  if imnet is not None:
    ds, n = imnet
    n_local = n // pc
  else:
    images, labels, _ = labelled_subset(data_cfg, fraction, seed, workdir)
    n = len(labels)
    lo, hi = n * pi // pc, n * (pi + 1) // pc
    ds = tf.data.Dataset.from_tensor_slices((images[lo:hi], labels[lo:hi]))
    n_local = hi - lo
  batches = augmented_batches(
    ds,
    n_local,
    batch_size=int(ft.batch_size) // pc,
    seed=seed,
    aug=crop_flip_aug(data_cfg.image_size, ft.get("crop_area_min", 0.08)),
    process_index=pi,
  )
  steps_per_epoch = max(1, n // int(ft.batch_size))
  total = (
    int(ft.steps)
    if ft.get("steps", 0) and ft.steps > 0
    else max(1, int(math.ceil(ft.epochs * steps_per_epoch)))
  )

  method = create_method(loaded.config, num_classes, int(ft.from_projection_layer))
  opt_cfg = ml_collections.ConfigDict(
    dict(
      name="lars" if ft.optimizer == "lars" else "sgd",
      base_lr=float(ft.lr),
      lr_scaling=ft.get("lr_scaling", "none"),
      weight_decay=float(ft.weight_decay),
      momentum=0.9,
      nesterov=ft.optimizer == "sgd_nesterov",
      warmup_epochs=float(ft.get("warmup_epochs", 0.0)),
      trust_coefficient=0.001,
      end_lr_factor=0.0,
    )
  )
  if ft.optimizer not in ("sgd_nesterov", "lars"):
    raise ValueError(f"config.finetune.optimizer={ft.optimizer!r}: use 'sgd_nesterov' or 'lars'.")
  tx, schedule = optim.create_optimizer(
    opt_cfg, batch_size=int(ft.batch_size), total_steps=total, steps_per_epoch=steps_per_epoch
  )
  rep = sharding.replicated(mesh)
  image_shape = (int(data_cfg.image_size), int(data_cfg.image_size), 3)

  def init_fn(rng, src_params, src_stats):
    v = method.init(rng, jnp.zeros((2, *image_shape), jnp.float32))
    params = transplant(v["params"], src_params)
    stats = transplant(v["batch_stats"], src_stats) if v["batch_stats"] else v["batch_stats"]
    # Copies: the train step donates its state, the frozen encoder must survive.
    params, stats = jax.tree.map(jnp.copy, (params, stats))
    return TrainState(
      step=jnp.zeros((), jnp.int32),
      params=params,
      batch_stats=stats,
      opt_state=tx.init(params),
      extras={},
      rng=jax.random.PRNGKey(seed + 1),
    )

  rng = jax.random.PRNGKey(seed)
  abstract = jax.eval_shape(init_fn, rng, loaded.params, loaded.batch_stats)
  state = jax.jit(init_fn, out_shardings=jax.tree.map(lambda _: rep, abstract))(
    rng, loaded.params, loaded.batch_stats
  )
  step_fn = step_lib.make_train_step(method, tx, schedule, mesh)
  logging.info(
    "Fine-tuning on %d labelled examples (%s%%), %d steps of batch %d.",
    n,
    pct,
    total,
    ft.batch_size,
  )
  log_every = max(1, int(ft.get("log_every_steps", 50)))
  for step in range(1, total + 1):
    state, m = step_fn(state, sharding.global_batch(next(batches), mesh))
    if step % log_every == 0 or step == total:
      hm = jax.tree.map(float, sharding.to_host(m))
      if not math.isfinite(hm["loss"]):
        raise FloatingPointError(
          f"Fine-tune loss is {hm['loss']} at step {step}; lower config.finetune.lr."
        )
      if writer is not None:
        writer.write(step, {f"finetune_{pct}pct_{k}": v for k, v in hm.items()})
      logging.info(
        "finetune step %d/%d loss %.4f train acc %.3f",
        step,
        total,
        hm["loss"],
        hm["train_accuracy"],
      )
  train_time = time.time() - t0
  top1, top5 = evaluate_classifier(
    method, state, data_cfg, data_cfg.eval_split, mesh, int(config.eval_batch_size)
  )
  prefix = f"finetune_{pct}pct"
  res = {
    f"{prefix}_top1": top1,
    f"{prefix}_top5": top5,
    f"{prefix}_time_s": time.time() - t0,
    f"{prefix}_train_time_s": train_time,
    f"{prefix}_examples": int(n),
    f"{prefix}_steps": int(total),
  }
  logging.info("Fine-tune (%s%% labels): test top-1 %.4f top-5 %.4f.", pct, top1, top5)
  return (res, state, method) if return_state else res


def evaluate_classifier(
  method, state, data_cfg, split: str, mesh, batch_size: int
) -> tuple[float, float]:
  """Top-1 / top-5 of method.embed's logits over a whole split (padding rows excluded)."""
  step = jax.jit(method.embed, out_shardings=sharding.data_sharded(mesh))
  pc = jax.process_count()
  per_process = max(
    jax.local_device_count(),
    batch_size // pc // jax.local_device_count() * jax.local_device_count(),
  )
  c1 = c5 = total = 0.0
  for hb in pipeline.eval_iterator(data_cfg, split, batch_size=per_process):
    g = sharding.global_batch(hb, mesh)
    logits, labels, mask = sharding.to_host((step(state, g["image"]), g["label"], g["mask"]))
    k = min(5, logits.shape[-1])
    top = np.argsort(-logits, axis=-1)[:, :k]
    hits = top == labels[:, None]
    c1 += float((hits[:, 0] * mask).sum())
    c5 += float((hits.any(-1) * mask).sum())
    total += float(mask.sum())
  return c1 / max(total, 1.0), c5 / max(total, 1.0)


__all__ = [
  "finetune",
  "create_method",
  "FinetuneNet",
  "augmented_batches",
  "crop_flip_aug",
  "split_arrays",
  "labelled_subset",
  "evaluate_classifier",
  "pct_name",
  "transplant",
]
