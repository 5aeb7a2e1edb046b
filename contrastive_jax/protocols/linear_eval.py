"""The linear evaluation of a frozen encoder (features BEFORE the projection head, method.embed).

1. features of the train and test splits (eval view, all devices);
2. weighted kNN for every k of config.knn_ks in one pass (bank sharded over the mesh);
3. linear probe: hyper-parameters chosen on config.val_fraction of the TRAINING split (seeded,
   stratified), the test split is touched once at the end (top-1, top-5). config.linear.mode
   'features' trains on precomputed features (evaluators/linear.py); 'augmented' (SimCLR's
   protocol) trains on crop + flip views, features recomputed per batch by the frozen encoder
   (evaluators/linear_augmented.py);
4. retrieval (test queries against the train gallery: Recall@1/5/10, mAP@R), embedding export,
   figures.
"""

import logging
import os
import time
from typing import Any

import jax
import numpy as np

from contrastive_jax import metrics as metrics_lib, preemption, sharding
from contrastive_jax.config_lib import augment
from contrastive_jax.data import eval_views, subsets
from contrastive_jax.evaluators import features as feats_lib
from contrastive_jax.evaluators import knn, linear, retrieval
from contrastive_jax.evaluators import linear_augmented as augmented_lib
from contrastive_jax.protocols import eval_state, visualize
from contrastive_jax.report import export

MODES = ("features", "augmented")


def split_features(loaded, data_cfg, split: str, mesh, batch_size: int, watcher=None):
  """(features, labels, ids) of a whole split through the frozen encoder (method.embed); with a
  preemption `watcher`, a stop request raises preemption.Interrupted between batches."""
  step = feats_lib.make_embed_step(loaded.method.embed, mesh)
  batches = eval_views.split_batches(data_cfg, split, batch_size)
  if watcher is not None:
    batches = watcher.interruptible(batches)
  return feats_lib.compute_features(step, loaded.state, batches, mesh)


def saved_split_features(config, loaded, data_cfg, split, mesh, batch_size, workdir, watcher):
  """split_features, kept in W2/features_{split}.npz (protocols/eval_state.py): a run preempted
  after a split's features resumes with them; a file made from another encoder, step or data is
  recomputed."""
  key = eval_state.encoder_key(config, loaded, data_cfg, split=split)
  path = eval_state.features_path(workdir, split)
  saved = eval_state.load(path, key)
  if saved is not None:
    logging.warning("Linear eval: %s features of %s restored from %s.", split, loaded.workdir, path)
    return saved["features"], saved["labels"], saved["ids"]
  out = split_features(loaded, data_cfg, split, mesh, batch_size, watcher)
  if jax.process_index() == 0:
    eval_state.save(path, key, features=out[0], labels=out[1], ids=out[2])
  return out


def embed_images(loaded, images, mesh, batch_size: int = 256) -> np.ndarray:
  """Features (before the head) of images (n, S, S, 3) in [0, 1] (eval view already applied)."""
  step = feats_lib.make_embed_step(loaded.method.embed, mesh)
  return feats_lib.embed_images(step, loaded.state, images, mesh, batch_size)


def nearest_neighbour_images(loaded, images, gallery_features, mesh, k: int = 5):
  """The k nearest gallery items (cosine, frozen features) of each given image.

  Args:
    loaded: pretrained.Pretrained.
    images: (n, S, S, 3) float32 in [0, 1].
    gallery_features: (m, d) features of the gallery (e.g. `split_features(...)[0]` of the train
      split).
    mesh: device mesh.
    k: neighbours per image.

  Returns:
    (indices (n, k) into the gallery, cosine similarities (n, k)), most similar first.
  """
  return retrieval.nearest_neighbours(embed_images(loaded, images, mesh), gallery_features, k)


def linear_augmented(
  config,
  loaded,
  data_cfg,
  num_classes: int,
  mesh,
  train_ids,
  train_x,
  val_x,
  val_y,
  writer=None,
  watcher=None,
  workdir=None,
) -> linear.LinearProbeResult:
  """SimCLR's linear evaluation: a grid of linear heads on crop + flip views of the train part.

  Args:
    config: evaluation config (seed, linear.*).
    loaded: the frozen encoder (pretrained.Pretrained).
    data_cfg: data fields (data.eval_views.data_config).
    num_classes: classes of the heads.
    mesh: device mesh.
    train_ids: positions (in the train split) of the examples to train on.
    train_x: their eval-view features (normalisation statistics).
    val_x, val_y: held-out features and labels (selection).
    writer: optional metrics.MetricWriter (linear_aug_loss_best_pair).
    watcher: optional preemption watcher: a stop request raises preemption.Interrupted between
      batches.
    workdir: W2, where the probe's state is saved on a stop (eval_state.PROBE_STATE) and resumed
      from on the next start, to the same result as an uninterrupted run.
  """
  lin = config.linear
  if lin.optimizer not in ("sgd_nesterov", "lars"):
    raise ValueError(f"config.linear.optimizer={lin.optimizer!r}: use 'sgd_nesterov' or 'lars'.")
  sharding.check_batch_size(int(lin.batch_size), "config.linear.batch_size")
  images, labels = eval_views.split_arrays(data_cfg, data_cfg.train_split)
  images, labels = images[train_ids], labels[train_ids]
  n = len(labels)
  batch = min(int(lin.batch_size), n // mesh.size * mesh.size)
  spe = max(1, n // batch)
  total = int(lin.steps) if lin.get("steps", -1) and lin.steps > 0 else int(lin.epochs) * spe
  aug = augment.crop_flip(data_cfg.image_size, lin.get("crop_area_min", 0.08))
  # Everything the probe's trajectory depends on: a saved state under another key is not resumed.
  key = eval_state.encoder_key(
    config,
    loaded,
    data_cfg,
    probe=lin.to_dict(),
    examples=int(n),
    ids=int(np.sum(train_ids)),
    val_fraction=float(config.val_fraction),
    label_fraction=float(config.label_fraction),
    batch=int(batch),
    total=int(total),
    num_classes=int(num_classes),
  )
  path = eval_state.probe_path(workdir) if workdir is not None else None
  resume = eval_state.load_leaves(path, key) if path is not None else None
  if resume is not None:
    logging.warning(
      "Augmented linear eval: resuming after step %d/%d from %s.", resume[0], total, path
    )
  batches = eval_views.augmented_array_batches(
    images,
    labels,
    batch_size=batch,
    seed=int(config.seed),
    aug=aug,
    skip_batches=resume[0] if resume else 0,
  )
  if watcher is not None:
    batches = watcher.interruptible(batches)
  logging.info("Augmented linear eval: %d steps of batch %d over %d examples.", total, batch, n)

  def on_stop(step, leaves):
    if path is not None and jax.process_index() == 0 and step > 0:
      eval_state.save_leaves(path, key, step, leaves)
      logging.warning(
        "Augmented linear eval: state after step %d/%d saved to %s.", step, total, path
      )

  def on_loss(step, loss):
    if writer is not None:
      writer.write(step, {"linear_aug_loss_best_pair": loss})

  result = augmented_lib.train_augmented_probe(
    loaded.method.embed,
    loaded.state,
    batches,
    train_x=train_x,
    val_x=val_x,
    val_y=val_y,
    num_classes=num_classes,
    lrs=tuple(lin.lrs),
    weight_decays=tuple(lin.weight_decays),
    optimizer=str(lin.optimizer),
    total_steps=total,
    mesh=mesh,
    on_loss=on_loss,
    resume=resume,
    on_stop=on_stop,
  )
  if path is not None and jax.process_index() == 0 and path.exists():
    path.unlink()  # finished: a later run of this W2 trains the probe from its start again
  return result


def _knn_ks(config, pretrain_cfg) -> tuple[int, ...]:
  """config.knn_ks with the pre-training monitor's k first (so knn_top1 is comparable to it)."""
  ks = [int(k) for k in config.knn_ks]
  primary = int(pretrain_cfg.get("knn", {}).get("k", ks[0]))
  return tuple([primary] + [k for k in ks if k != primary]) if primary in ks else tuple(ks)


def check_config(config) -> None:
  """The linear-eval fields a user can get wrong, checked before any feature is computed."""
  if config.linear.mode not in MODES:
    raise ValueError(
      f"config.linear.mode={config.linear.mode!r}: use 'features' (precomputed features) or "
      f"'augmented' (crop + flip views, features recomputed per batch)."
    )
  split = config.get("export_split", None)
  if split not in (None, "", "test", "train"):
    raise ValueError(f"config.export_split={split!r}: use None, 'test' or 'train'.")
  visualize.check(config)  # embedding maps (and their packages), projector points


def _stop_if_requested(watcher) -> None:
  if watcher.requested_now():
    raise preemption.Interrupted()


def _probe(config, loaded, data_cfg, num_classes, mesh, writer, train, watcher=None, workdir=None):
  """The linear probe of config.linear.mode: selection on a held-out part of TRAIN."""
  lin = config.linear
  train_x, train_y, train_ids = train
  tr, val = linear.holdout_split(
    len(train_y), float(config.val_fraction), int(config.seed), labels=train_y
  )
  if float(config.label_fraction) < 1.0:
    tr = tr[subsets.balanced_subset(train_y[tr], float(config.label_fraction), int(config.seed))]
  if lin.mode == "features":
    return linear.train_linear_probe(
      train_x[tr],
      train_y[tr],
      train_x[val],
      train_y[val],
      num_classes=num_classes,
      lrs=tuple(lin.lrs),
      weight_decays=tuple(lin.weight_decays),
      epochs=int(lin.epochs),
      batch_size=int(lin.batch_size),
      seed=int(config.seed),
      optimizer=lin.optimizer,
      normalization=lin.get("normalization", "standardize"),
      refit=bool(lin.get("refit", True)),
      between_epochs=None if watcher is None else lambda: _stop_if_requested(watcher),
    )
  return linear_augmented(
    config,
    loaded,
    data_cfg,
    num_classes,
    mesh,
    train_ids[tr],
    train_x[tr],
    train_x[val],
    train_y[val],
    writer,
    watcher,
    workdir,
  )


def linear_evaluation(
  config, loaded, data_cfg, num_classes: int, mesh, workdir: str, writer
) -> dict:
  """kNN, linear probe, retrieval, export and figures of the frozen encoder; returns the numbers.

  A SIGTERM (preemption) stops it between two batches of any feature pass or of the augmented
  probe's training and returns {'preempted': True}; the features finished so far and the augmented
  probe's state are kept in W2 (protocols/eval_state.py), so the next start resumes after them.
  The 'features' probe stops between two of its epochs and is redone after a stop (it works on
  the saved features); the kNN (one pass over features in memory, seconds) is redone too.
  """
  check_config(config)
  watcher = preemption.PreemptionWatcher()
  try:
    return _linear_evaluation(config, loaded, data_cfg, num_classes, mesh, workdir, writer, watcher)
  except preemption.Interrupted:
    print(
      "Preempted during the linear evaluation; the features computed so far (and the augmented "
      "probe's state) are saved in "
      f"{workdir}. Run the same command again to resume.",
      flush=True,
    )
    return {"preempted": True}
  finally:
    watcher.close()


def _linear_evaluation(config, loaded, data_cfg, num_classes, mesh, workdir, writer, watcher):
  res: dict[str, Any] = {}
  bs = int(config.eval_batch_size)
  t0 = time.time()
  train, test = (
    saved_split_features(config, loaded, data_cfg, split, mesh, bs, workdir, watcher)
    for split in (data_cfg.train_split, data_cfg.eval_split)
  )
  (train_x, train_y, _), (test_x, test_y, _) = train, test
  res["features_time_s"] = time.time() - t0
  res["feature_dim"] = int(train_x.shape[1])
  logging.info(
    "Features: train %s, test %s (%.1fs).", train_x.shape, test_x.shape, res["features_time_s"]
  )

  # kNN: every k in one pass.
  t0 = time.time()
  temp = config.get("knn_temperature", None)
  temp = float(temp if temp is not None else loaded.config.get("knn", {}).get("temperature", 0.1))
  res.update(
    knn.knn_classify(
      train_x,
      train_y,
      test_x,
      test_y,
      num_classes=num_classes,
      ks=_knn_ks(config, loaded.config),
      temperature=temp,
      mesh=mesh,
    )
  )
  res["knn_time_s"] = time.time() - t0
  logging.info("kNN: %s", {k: round(v, 4) for k, v in res.items() if k.startswith("knn_top1")})

  # Linear probe: selection on a held-out part of TRAIN; test once at the end.
  t0 = time.time()
  probe = _probe(config, loaded, data_cfg, num_classes, mesh, writer, train, watcher, workdir)
  top1, top5 = probe.evaluate(test_x, test_y)
  res.update(
    {
      "linear_top1": top1,
      "linear_top5": top5,
      "linear_val_top1": probe.val_top1,
      "linear_val_top5": probe.val_top5,
      "linear_best_lr": probe.best_lr,
      "linear_best_weight_decay": probe.best_weight_decay,
      "linear_mode": config.linear.mode,
      "linear_time_s": time.time() - t0,
    }
  )
  if jax.process_index() == 0:
    metrics_lib.write_json(os.path.join(workdir, "linear_grid.json"), {"grid": probe.grid})
  logging.info(
    "Linear (%s): test top-1 %.4f top-5 %.4f (val top-1 %.4f; lr %g wd %g).",
    config.linear.mode,
    top1,
    top5,
    probe.val_top1,
    probe.best_lr,
    probe.best_weight_decay,
  )

  if config.retrieval:
    t0 = time.time()
    res.update(retrieval.retrieval_metrics(test_x, test_y, train_x, train_y, ks=(1, 5, 10)))
    res["retrieval_time_s"] = time.time() - t0

  split = config.get("export_split", None)
  if split:
    if jax.process_index() == 0:
      res["export_path"] = export.export_embeddings(
        os.path.join(workdir, f"embeddings_{split}.npz"), *{"test": test, "train": train}[split]
      )

  if config.plots and jax.process_index() == 0:
    t0 = time.time()
    test_pred = linear.predict(probe.params, test_x)
    res["plots"] = visualize.make_plots(
      config, loaded, data_cfg, workdir, train_x, train_y, test_x, test_y, test_pred
    )
    res["plots_time_s"] = time.time() - t0
    # The same figures in TensorBoard's Images tab, and the test split in its projector.
    res["tensorboard_images"] = visualize.to_tensorboard(writer, loaded.step, workdir, res["plots"])
  if jax.process_index() == 0:
    proj = visualize.projector(config, data_cfg, workdir, test_x, test_y)
    if proj is not None:
      res["projector_points"] = proj["points"]
  return res
