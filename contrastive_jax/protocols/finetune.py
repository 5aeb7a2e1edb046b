"""Fine-tuning of a pre-trained encoder (+ optionally its first projection layer) with a new linear head on a
class-balanced labelled fraction of the training split (SimCLR's semi-supervised protocol, Chen et
al. 2020 Sec. 6 / Appendix B.6; SimCLRv2 fine-tunes from the first projection layer, Chen et al.
2020b Sec. 2).

The fine-tune is a Method (methods/base.py): a models.classifier.Classifier with the global-mean
cross-entropy of the labelled batch as its loss_fn. It is driven by the pre-training step builder:
step.create_state for the state (then the pre-trained encoder, read at the pre-training method's
encoder_path, and projector layer, at its projector_path, are copied in), step.make_train_step for
the update (jit(shard_map) over the mesh, BatchNorm statistics synchronised over the data axis).
Training views are crop + flip only.

Labelled subsets (data/subsets.py): round(fraction * n / C) examples per class, seeded; the list is
written to W2/subset_{pct}pct_seed{seed}.txt and re-read when present, so a run repeats exactly.
ImageNet: the SimCLR 1 % / 10 % splits are TFDS's `imagenet2012_subset/1pct` and `/10pct` (train
split) and are used instead of a drawn subset when config.dataset is 'imagenet2012' (prepare them
with `tfds build imagenet2012_subset`; this path is not exercised by the tests here).
"""

import logging
import math
import os
import time
import types

import jax
import jax.numpy as jnp
import ml_collections

from contrastive_jax import checkpoint, optim, preemption, pretrained, sharding
from contrastive_jax import step as step_lib
from contrastive_jax.config_lib import augment
from contrastive_jax.data import eval_views, subsets
from contrastive_jax.evaluators import features as feats_lib
from contrastive_jax.evaluators import linear
from contrastive_jax.methods import base
from contrastive_jax.models import classifier

_OPTIMIZERS = ("sgd_nesterov", "lars")


def create_method(pretrain_cfg, num_classes: int, from_projection_layer: int = 0) -> base.Method:
  """The fine-tune as a Method; embed returns the class logits (eval mode)."""
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

  def make(axis):
    return classifier.Classifier(
      encoder=base.build_encoder(pretrain_cfg, axis_name=axis),
      num_classes=num_classes,
      proj_dim=proj_dim,
      proj_use_bn=bool(head.get("use_bn", True)),
      bn_axis_name=axis,
    )

  net, eval_net = make(base.AXIS), make(None)

  def init(rng, images):
    return {**base.init_net(eval_net, rng, images), "extras": {}}

  def loss_fn(params, state, batch, rng, step):
    del rng, step
    logits, new_stats = base.apply_train(net, params, state.batch_stats, batch["image"])
    loss, acc = base.probe_loss(logits, batch["label"])
    return loss, {
      "batch_stats": new_stats,
      "metrics": {"loss": loss, "train_accuracy": acc},
      "extras_update": None,
    }

  def embed(state, images):
    return base.apply_eval(eval_net, state.params, state.batch_stats, images)

  # Classifier's parameter layout is the Method default (encoder_path, projector_path).
  return base.Method(
    name="finetune", init=init, loss_fn=loss_fn, embed=embed, batch_keys=("image", "label")
  )


def _set_at(tree: dict, path: tuple[str, ...], value) -> dict:
  """A copy of nested dicts `tree` with `value` at `path` (the dicts on the way are copied)."""
  if not path:
    return value
  out = dict(tree)
  out[path[0]] = _set_at(tree[path[0]], path[1:], value)
  return out


def transplant(
  fresh: dict, source: dict, *, method: base.Method, source_method: base.Method
) -> dict:
  """`fresh` (a params or batch_stats tree of the fine-tune `method`) with the pre-trained encoder
  and, when the fine-tune has one, the first projector layer taken from `source` (the same tree of
  the pre-training `source_method`, read at its encoder_path / projector_path)."""
  out = fresh
  parts = (  # (path here, path in the pre-trained tree, keep only the layers the fine-tune has)
    (method.encoder_path, source_method.encoder_path, False),
    (method.projector_path, source_method.projector_path, True),
  )
  for path, source_path, first_layers in parts:
    want = pretrained.subtree_at(fresh, path)
    if want is None:  # no such part here (encoder-only fine-tune, or no BN statistics)
      continue
    got = pretrained.subtree_at(source, source_path) or {}
    if first_layers:
      got = {name: got[name] for name in want if name in got}
    want_shapes, got_shapes = jax.tree.map(jnp.shape, want), jax.tree.map(jnp.shape, got)
    if jax.tree.structure(want_shapes) != jax.tree.structure(got_shapes) or jax.tree.leaves(
      want_shapes
    ) != jax.tree.leaves(got_shapes):
      raise ValueError(
        f"Pre-trained parameters at {'/'.join(source_path)} do not match the fine-tune network's "
        f"at {'/'.join(path)} ({got_shapes} vs {want_shapes})."
      )
    out = _set_at(out, path, got)
  return out


def _initial_state(method, tx, loaded, seed: int, mesh, image_shape):
  """step.create_state's replicated state with the pre-trained weights copied in (the train step
  donates its state; the weights of `loaded` must survive it)."""
  state = step_lib.create_state(method, tx, types.SimpleNamespace(seed=seed), mesh, image_shape)

  def from_pretrained(state, src_params, src_stats):
    moved = dict(method=method, source_method=loaded.method)
    params = jax.tree.map(jnp.copy, transplant(state.params, src_params, **moved))
    stats = jax.tree.map(jnp.copy, transplant(state.batch_stats, src_stats, **moved))
    return state.replace(params=params, batch_stats=stats, opt_state=tx.init(params))

  rep = sharding.replicated(mesh)
  return jax.jit(from_pretrained, donate_argnums=0, out_shardings=rep)(
    state, loaded.params, loaded.batch_stats
  )


def _optimizer(ft, total: int, steps_per_epoch: int):
  if ft.optimizer not in _OPTIMIZERS:
    raise ValueError(f"config.finetune.optimizer={ft.optimizer!r}: use 'sgd_nesterov' or 'lars'.")
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
  return optim.create_optimizer(
    opt_cfg, batch_size=int(ft.batch_size), total_steps=total, steps_per_epoch=steps_per_epoch
  )


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
  """Fine-tunes `loaded` (pretrained.Pretrained) on config.label_fraction of the train split.

  The weights of `loaded` are copied, never changed.

  Args:
    config: evaluation config (label_fraction, seed, eval_batch_size, finetune.*).
    loaded: the pre-trained (or random-init) encoder.
    data_cfg: data fields (data.eval_views.data_config).
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
  pct = subsets.pct_name(fraction)
  seed = int(config.seed)
  t0 = time.time()
  sharding.check_batch_size(int(ft.batch_size), "config.finetune.batch_size")
  aug = augment.crop_flip(data_cfg.image_size, ft.get("crop_area_min", 0.08))
  imnet = subsets.imagenet_subset(data_cfg, fraction)
  if imnet is not None:
    ds, n = imnet

    def make_batches(skip):
      return eval_views.augmented_batches(
        ds,
        n // jax.process_count(),
        batch_size=int(ft.batch_size) // jax.process_count(),
        seed=seed,
        aug=aug,
        process_index=jax.process_index(),
        skip_batches=skip,
      )
  else:
    images, labels, _ = subsets.labelled_subset(data_cfg, fraction, seed, workdir)
    n = len(labels)

    def make_batches(skip):
      return eval_views.augmented_array_batches(
        images, labels, batch_size=int(ft.batch_size), seed=seed, aug=aug, skip_batches=skip
      )

  steps_per_epoch = max(1, n // int(ft.batch_size))
  total = (
    int(ft.steps)
    if ft.get("steps", 0) and ft.steps > 0
    else max(1, int(math.ceil(ft.epochs * steps_per_epoch)))
  )
  tx, schedule = _optimizer(ft, total, steps_per_epoch)
  method = create_method(loaded.config, num_classes, int(ft.from_projection_layer))
  image_shape = (int(data_cfg.image_size), int(data_cfg.image_size), 3)
  state = _initial_state(method, tx, loaded, seed, mesh, image_shape)
  # The fine-tune's own checkpoints (W2/checkpoints): a preempted fine-tune resumes from them.
  meta = {
    "finetune": {
      "pretrained_workdir": loaded.workdir,
      "pretrained_step": loaded.step,
      "random_init": bool(loaded.random_init),
      "dataset": data_cfg.dataset,
      "label_fraction": fraction,
      "seed": seed,
      "examples": int(n),
      "total_steps": int(total),
      "config": ft.to_dict(),
    }
  }
  ckpt = checkpoint.Checkpointer(
    os.path.join(workdir, "checkpoints"),
    keep=2,
    save_every=max(1, int(ft.checkpoint_every_steps)),
  )
  log_every = max(1, int(ft.get("log_every_steps", 50)))
  watcher = preemption.PreemptionWatcher(agree_every=min(10, log_every))
  try:
    restored = ckpt.restore_latest_good(
      checkpoint.abstract_like(state), check=lambda saved: _check_resume(saved, meta)
    )
    start = 0
    if restored is not None:
      start, state, _ = restored
      logging.warning("Fine-tune resumed from %s at step %d.", ckpt.path(start), start)
    step_fn = step_lib.make_train_step(method, tx, schedule, mesh)
    batches = make_batches(start)
    logging.info(
      "Fine-tuning on %d labelled examples (%s%%), %d steps of batch %d.",
      n,
      pct,
      total,
      ft.batch_size,
    )
    step = start
    for step in range(start + 1, total + 1):
      state, m = step_fn(state, sharding.global_batch(next(batches), mesh))
      stop = watcher.should_stop(step)
      ckpt.save(step, state, meta, force=stop or step == total)
      if stop:
        res = _preempted(ckpt, step, total)
        return (res, None, method) if return_state else res
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
    ckpt.save(step, state, meta, force=True)  # a restart after this only evaluates
    ckpt.wait()
    train_time = time.time() - t0
    try:
      top1, top5 = evaluate_classifier(
        method, state, data_cfg, data_cfg.eval_split, mesh, int(config.eval_batch_size), watcher
      )
    except preemption.Interrupted:
      res = _preempted(ckpt, step, total, " during the fine-tune's evaluation")
      return (res, None, method) if return_state else res
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
  finally:
    watcher.close()
    ckpt.close()


def _check_resume(saved: dict, meta: dict) -> None:
  old, new = saved.get("finetune", {}), meta["finetune"]
  diffs = [
    f"{k}: checkpoint has {old.get(k)!r}, config has {new[k]!r}"
    for k in new
    if old.get(k) != new[k]
  ]
  if diffs:
    raise checkpoint.IncompatibleCheckpointError(
      "The fine-tune checkpoint in this workdir was written by another fine-tune:\n  "
      + "\n  ".join(diffs)
      + "\nNothing on disk was changed. Use a new --workdir, or restore the old values."
    )


def _preempted(ckpt, step: int, total: int, during: str = "") -> dict:
  ckpt.wait()
  where = os.fspath(ckpt.path(step))
  print(
    f"Preempted{during} at fine-tune step {step}/{total}; checkpoint saved to {where}.", flush=True
  )
  return {"preempted": True, "finetune_steps": step, "checkpoint": where}


def evaluate_classifier(
  method, state, data_cfg, split: str, mesh, batch_size: int, watcher=None
) -> tuple[float, float]:
  """Top-1 / top-5 of method.embed's logits over a whole split (padding rows excluded); with a
  preemption `watcher`, a stop request raises preemption.Interrupted between batches."""
  batches = eval_views.split_batches(data_cfg, split, batch_size)
  if watcher is not None:
    batches = watcher.interruptible(batches)
  logits, labels, _ = feats_lib.compute_features(
    feats_lib.make_embed_step(method.embed, mesh), state, batches, mesh
  )
  return linear.topk_accuracy(logits, labels)
