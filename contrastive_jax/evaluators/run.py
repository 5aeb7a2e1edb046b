"""Evaluation entry point over any pre-training workdir: `evaluate(config, workdir)`.

  python -m contrastive_jax.main --config=configs/linear_eval.py:cpu --config.pretrained_workdir=W --workdir=W2
  python -m contrastive_jax.main --config=configs/finetune.py:cpu --config.pretrained_workdir=W \
      --config.label_fraction=0.1 --workdir=W3

mode 'linear_eval' (frozen encoder; features BEFORE the projection head, method.embed):
  1. features of the train and test splits (eval view, all devices);
  2. weighted kNN for every k of config.knn_ks in one pass (bank sharded over the mesh);
  3. linear probe: hyper-parameters chosen on config.val_fraction of the TRAINING split (seeded,
     stratified), the test split is touched once at the end (top-1, top-5). linear.mode 'features'
     trains on precomputed features; 'augmented' (SimCLR's protocol) trains on crop + flip views,
     features recomputed per batch by the frozen encoder;
  4. retrieval (test queries against the train gallery: Recall@1/5/10, mAP@R), embedding export,
    figures.
mode 'finetune': evaluators/finetune.py on config.label_fraction of the labels.

Everything lands in W2: results.json (metrics.update_results), metrics.jsonl + TensorBoard
(MetricWriter), config.json, PNGs, embeddings_{split}.npz, subset_{pct}pct_seed{seed}.txt.
"""

import functools
import json
import logging
import os
import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import tensorflow as tf

from contrastive_jax import metrics as metrics_lib, sharding
from contrastive_jax.data import pipeline
from contrastive_jax.evaluators import (
  export,
  features as feats_lib,
  finetune as finetune_lib,
  knn,
  linear,
  plots,
  pretrained,
  retrieval,
  subsets,
)

MODES = ("linear_eval", "finetune")


# ----------------------------------------------------------------------------- set-up


def data_config(config, pretrain_cfg) -> ml_collections.ConfigDict:
  """The data fields of the evaluation: the pre-training config's, with the evaluation config's overrides."""
  d = ml_collections.ConfigDict(pretrain_cfg.to_dict())
  for field in ("dataset", "data_dir", "train_split", "eval_split"):
    value = config.get(field, None)
    if value is not None:
      d[field] = value
  if d.get("data_dir", None) is None:
    d.data_dir = None
  return d


def class_names(data_cfg) -> list[str] | None:
  """Label names from TFDS (None for the synthetic set or when unavailable)."""
  if data_cfg.dataset == pipeline.SYNTHETIC:
    return None
  try:
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

    b = tfds.builder(
      data_cfg.dataset, data_dir=pipeline.resolve_data_dir(data_cfg.get("data_dir")), try_gcs=False
    )
    return list(b.info.features["label"].names)
  except Exception:  # pylint: disable=broad-except
    return None


def _per_process_batch(batch_size: int) -> int:
  n_local = jax.local_device_count()
  return max(n_local, batch_size // jax.process_count() // n_local * n_local)


def split_features(loaded, data_cfg, split: str, mesh, batch_size: int):
  """(features, labels, ids) of a whole split through the frozen encoder (method.embed)."""
  step = feats_lib.make_embed_step(loaded.method, mesh)
  batches = pipeline.eval_iterator(data_cfg, split, batch_size=_per_process_batch(batch_size))
  return feats_lib.compute_features(step, loaded.state, batches, mesh)


def embed_images(loaded, images, mesh, batch_size: int = 256) -> np.ndarray:
  """Features (before the head) of arbitrary images (n, S, S, 3) in [0, 1] (eval view already applied)."""
  images = np.asarray(images, np.float32)
  step = feats_lib.make_embed_step(loaded.method, mesh)
  nd = mesh.size
  batch = max(nd, -(-min(batch_size, len(images)) // nd) * nd)
  out = []
  for start in range(0, len(images), batch):
    chunk = images[start : start + batch]
    real = len(chunk)
    if real < batch:
      chunk = np.concatenate([chunk, np.zeros((batch - real, *chunk.shape[1:]), np.float32)])
    f = step(loaded.state, sharding.global_batch({"image": chunk}, mesh)["image"])
    out.append(np.asarray(sharding.to_host(f), np.float32)[:real])
  return np.concatenate(out)


def nearest_neighbour_images(loaded, images, gallery_features, mesh, k: int = 5):
  """The k nearest gallery items (cosine, frozen features) of each given image.

  Args:
    loaded: evaluators.pretrained.Pretrained.
    images: (n, S, S, 3) float32 in [0, 1].
    gallery_features: (m, d) features of the gallery (e.g. `split_features(...)[0]` of the train
      split).
    mesh: device mesh.
    k: neighbours per image.

  Returns:
    (indices (n, k) into the gallery, cosine similarities (n, k)), most similar first.
  """
  return retrieval.nearest_neighbours(embed_images(loaded, images, mesh), gallery_features, k)


def images_at(data_cfg, split: str, ids) -> np.ndarray:
  """Eval-view images (len(ids), S, S, 3) of the given positions of a split (one pass over it)."""
  ids = np.asarray(ids, np.int64).reshape(-1)
  want = set(ids.tolist())
  found: dict[int, np.ndarray] = {}
  for hb in pipeline.eval_iterator(
    data_cfg, split, batch_size=512, process_index=0, process_count=1
  ):
    for row, i in enumerate(hb["index"]):
      if int(i) in want:
        found[int(i)] = hb["image"][row]
    if len(found) == len(want):
      break
  return np.stack([found[int(i)] for i in ids])


# ----------------------------------------------------------------------------- linear probe, augmen


def probe_predict(params: dict, x) -> np.ndarray:
  """Class predictions of a linear.LinearProbeResult's params on raw features."""
  x = np.asarray(x, np.float32)
  if bool(params["l2"]):
    x = x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)
  return np.argmax(
    ((x - params["mean"]) * params["inv_std"]) @ params["kernel"] + params["bias"], axis=-1
  )


def _topk_acc(logits: np.ndarray, y: np.ndarray) -> tuple[float, float]:
  k = min(5, logits.shape[-1])
  top = np.argsort(-logits, axis=-1)[:, :k]
  hits = top == y[:, None]
  return float(hits[:, 0].mean()), float(hits.any(-1).mean())


@functools.lru_cache(maxsize=4)
def _augmented_step(method, optimizer: str, total: int):
  """jit: frozen-encoder features of an augmented batch -> one update of every (lr, wd) head of the grid."""

  def step(heads, opt_states, enc_state, images, labels, mean, inv_std, lrs, wds):
    feats = jax.lax.stop_gradient(method.embed(enc_state, images)).astype(jnp.float32)
    x = (feats - mean) * inv_std

    def one(head, opt_state, lr, wd):
      tx = linear._make_tx(optimizer, lr, wd, total)  # pylint: disable=protected-access
      loss, g = jax.value_and_grad(linear._loss)(head, x, labels)  # pylint: disable=protected-access
      updates, opt_state = tx.update(g, opt_state, head)
      return optax.apply_updates(head, updates), opt_state, loss

    return jax.vmap(one)(heads, opt_states, lrs, wds)

  return jax.jit(step, donate_argnums=(0, 1))


def linear_augmented(
  config, loaded, data_cfg, num_classes: int, mesh, train_ids, train_x, val_x, val_y, writer=None
) -> linear.LinearProbeResult:
  """SimCLR's linear evaluation: a grid of linear heads on crop + flip views of the train part, frozen encoder.

  Every (lr, wd) head sees the same augmented batches (features computed once per batch); the pair
  with the best held-out top-1 (on eval-view features of the validation part) is returned, trained
  on the train part only. Features are standardised with the mean / std of the eval-view train
  features.

  Args:
    train_ids: positions (in the train split) of the examples to train on.
    train_x: their eval-view features (normalisation statistics).
    val_x, val_y: held-out features and labels (selection).
  """
  lin = config.linear
  if lin.optimizer not in ("sgd_nesterov", "lars"):
    raise ValueError(f"config.linear.optimizer={lin.optimizer!r}: use 'sgd_nesterov' or 'lars'.")
  sharding.check_batch_size(int(lin.batch_size), "config.linear.batch_size")
  images, labels = finetune_lib.split_arrays(data_cfg, data_cfg.train_split)
  images, labels = images[train_ids], labels[train_ids]
  n = len(labels)
  pc, pi = jax.process_count(), jax.process_index()
  lo, hi = n * pi // pc, n * (pi + 1) // pc
  batch = min(int(lin.batch_size), n // mesh.size * mesh.size)
  batches = finetune_lib.augmented_batches(
    tf.data.Dataset.from_tensor_slices((images[lo:hi], labels[lo:hi])),
    hi - lo,
    batch_size=batch // pc,
    seed=int(config.seed),
    aug=finetune_lib.crop_flip_aug(data_cfg.image_size, lin.get("crop_area_min", 0.08)),
    process_index=pi,
  )
  spe = max(1, n // batch)
  total = int(lin.steps) if lin.get("steps", -1) and lin.steps > 0 else int(lin.epochs) * spe
  pairs = [(float(a), float(b)) for a in lin.lrs for b in lin.weight_decays]
  lrs = jnp.asarray([p[0] for p in pairs], jnp.float32)
  wds = jnp.asarray([p[1] for p in pairs], jnp.float32)
  g, d = len(pairs), train_x.shape[1]
  mean = train_x.mean(0).astype(np.float32)
  inv_std = (1.0 / (train_x.std(0) + 1e-6)).astype(np.float32)
  heads = {
    "kernel": jnp.zeros((g, d, num_classes), jnp.float32),
    "bias": jnp.zeros((g, num_classes), jnp.float32),
  }
  opt_states = jax.vmap(
    lambda lr, wd, h: linear._make_tx(  # pylint: disable=protected-access
      lin.optimizer, lr, wd, total
    ).init(h)
  )(lrs, wds, heads)
  step = _augmented_step(loaded.method, str(lin.optimizer), total)
  rep = sharding.replicated(mesh)
  heads, opt_states, mean_d, inv_d, lrs, wds = jax.device_put(
    (heads, opt_states, mean, inv_std, lrs, wds), rep
  )
  logging.info(
    "Augmented linear eval: %d heads, %d steps of batch %d over %d examples.", g, total, batch, n
  )
  for s in range(1, total + 1):
    gb = sharding.global_batch(next(batches), mesh)
    heads, opt_states, loss = step(
      heads, opt_states, loaded.state, gb["image"], gb["label"], mean_d, inv_d, lrs, wds
    )
    if writer is not None and (s % 50 == 0 or s == total):
      writer.write(s, {"linear_aug_loss_best_pair": float(np.min(sharding.to_host(loss)))})
  kernels, biases = sharding.to_host((heads["kernel"], heads["bias"]))
  xv = (np.asarray(val_x, np.float32) - mean) * inv_std
  acc = np.array([_topk_acc(xv @ kernels[i] + biases[i], np.asarray(val_y)) for i in range(g)])
  best = int(np.argmax(acc[:, 0]))
  grid = [
    {"lr": lr, "weight_decay": wd, "val_top1": float(a[0]), "val_top5": float(a[1])}
    for (lr, wd), a in zip(pairs, acc)
  ]
  params = {
    "kernel": kernels[best],
    "bias": biases[best],
    "mean": mean,
    "inv_std": inv_std,
    "l2": np.bool_(False),
  }
  return linear.LinearProbeResult(
    params=params,
    best_lr=pairs[best][0],
    best_weight_decay=pairs[best][1],
    val_top1=float(acc[best, 0]),
    val_top5=float(acc[best, 1]),
    grid=grid,
    normalization="standardize",
    refit=False,
  )


# ----------------------------------------------------------------------------- linear_eval mode


def _knn_ks(config, pretrain_cfg) -> tuple[int, ...]:
  """config.knn_ks with the pre-training monitor's k first (so knn_top1 is comparable to it) when present."""
  ks = [int(k) for k in config.knn_ks]
  primary = int(pretrain_cfg.get("knn", {}).get("k", ks[0]))
  return tuple([primary] + [k for k in ks if k != primary]) if primary in ks else tuple(ks)


def linear_evaluation(
  config, loaded, data_cfg, num_classes: int, mesh, workdir: str, writer
) -> dict:
  """kNN, linear probe, retrieval, export and figures of the frozen encoder; returns the numbers."""
  res: dict[str, Any] = {}
  bs = int(config.eval_batch_size)
  t0 = time.time()
  train_x, train_y, train_ids = split_features(loaded, data_cfg, data_cfg.train_split, mesh, bs)
  test_x, test_y, test_ids = split_features(loaded, data_cfg, data_cfg.eval_split, mesh, bs)
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
  lin = config.linear
  tr, val = linear.holdout_split(
    len(train_y), float(config.val_fraction), int(config.seed), labels=train_y
  )
  if float(config.label_fraction) < 1.0:
    tr = tr[subsets.balanced_subset(train_y[tr], float(config.label_fraction), int(config.seed))]
  if lin.mode == "features":
    probe = linear.train_linear_probe(
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
    )
  elif lin.mode == "augmented":
    probe = linear_augmented(
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
    )
  else:
    raise ValueError(
      f"config.linear.mode={lin.mode!r}: use 'features' (precomputed features) or 'augmented' "
      f"(crop + flip views, features recomputed per batch)."
    )
  top1, top5 = probe.evaluate(test_x, test_y)
  res.update(
    {
      "linear_top1": top1,
      "linear_top5": top5,
      "linear_val_top1": probe.val_top1,
      "linear_val_top5": probe.val_top5,
      "linear_best_lr": probe.best_lr,
      "linear_best_weight_decay": probe.best_weight_decay,
      "linear_mode": lin.mode,
      "linear_time_s": time.time() - t0,
    }
  )
  if jax.process_index() == 0:
    metrics_lib.write_json(os.path.join(workdir, "linear_grid.json"), {"grid": probe.grid})
  logging.info(
    "Linear (%s): test top-1 %.4f top-5 %.4f (val top-1 %.4f; lr %g wd %g).",
    lin.mode,
    top1,
    top5,
    probe.val_top1,
    probe.best_lr,
    probe.best_weight_decay,
  )

  if config.retrieval:
    t0 = time.time()
    r = retrieval.retrieval_metrics(test_x, test_y, train_x, train_y, ks=(1, 5, 10))
    res.update(r)
    res["retrieval_time_s"] = time.time() - t0

  split = config.get("export_split", None)
  if split:
    arrays = {"test": (test_x, test_y, test_ids), "train": (train_x, train_y, train_ids)}
    if split not in arrays:
      raise ValueError(f"config.export_split={split!r}: use None, 'test' or 'train'.")
    if jax.process_index() == 0:
      res["export_path"] = export.export_embeddings(
        os.path.join(workdir, f"embeddings_{split}.npz"), *arrays[split]
      )

  if config.plots and jax.process_index() == 0:
    t0 = time.time()
    res["plots"] = make_plots(
      config,
      loaded,
      data_cfg,
      mesh,
      workdir,
      train_x,
      train_y,
      test_x,
      test_y,
      probe_predict(probe.params, test_x),
    )
    res["plots_time_s"] = time.time() - t0
  return res


def make_plots(
  config, loaded, data_cfg, mesh, workdir, train_x, train_y, test_x, test_y, test_pred
) -> list:
  """Embedding map (PCA), retrieval grid, pre-training curves, linear-probe confusion matrix (PNG in W2)."""
  del mesh
  names = class_names(data_cfg)
  tag = "random init" if loaded.random_init else f"{loaded.config.method}, step {loaded.step}"
  out = [
    plots.plot_embedding_2d(
      test_x,
      test_y,
      names,
      os.path.join(workdir, "embedding_pca.png"),
      "pca",
      title=f"Test embeddings (PCA; {tag})",
    )
  ]
  rng = np.random.default_rng(int(config.seed))
  nq = min(int(config.get("num_plot_queries", 8)), len(test_y))
  queries = np.sort(rng.choice(len(test_y), nq, replace=False))
  idx, _ = retrieval.nearest_neighbours(test_x[queries], train_x, 5)
  q_img = images_at(data_cfg, data_cfg.eval_split, queries)
  flat = idx.reshape(-1)
  uniq, inv = np.unique(flat, return_inverse=True)
  n_img = images_at(data_cfg, data_cfg.train_split, uniq)[inv].reshape(*idx.shape, *q_img.shape[1:])
  out.append(
    plots.plot_retrieval_grid(
      q_img,
      n_img,
      test_y[queries],
      train_y[idx],
      names,
      os.path.join(workdir, "retrieval_grid.png"),
      title=f"Test queries, nearest train images ({tag})",
    )
  )
  curves = os.path.join(loaded.workdir, "metrics.jsonl")
  if os.path.exists(curves):
    try:
      out.append(
        plots.plot_training_curves(
          curves,
          os.path.join(workdir, "training_curves.png"),
          title=f"Pre-training: {os.path.basename(loaded.workdir)}",
        )
      )
    except ValueError as e:
      logging.warning("No training curves: %s", e)
  out.append(
    plots.plot_confusion_matrix(
      test_y,
      test_pred,
      names or [str(i) for i in range(int(max(test_y.max(), test_pred.max())) + 1)],
      os.path.join(workdir, "linear_confusion.png"),
      title=f"Linear probe, test split ({tag})",
    )
  )
  return [os.path.basename(p) for p in out]


# ----------------------------------------------------------------------------- entry


def evaluate(config, workdir: str) -> dict:
  """Evaluates the encoder of config.pretrained_workdir (or a random init of it); returns results.json's dict."""
  if config.mode not in MODES:
    raise ValueError(f"config.mode={config.mode!r}: evaluators.run handles {MODES}.")
  if not config.get("pretrained_workdir", None):
    raise ValueError(
      "Set --config.pretrained_workdir=W (a pre-training workdir with config.json and "
      "checkpoints/)."
    )
  workdir = os.path.abspath(workdir)
  t_start = time.time()
  mesh = sharding.make_mesh()
  pcfg = pretrained.load_config(config.pretrained_workdir)
  data_cfg = data_config(config, pcfg)
  num_classes, _, _ = pipeline.dataset_info(
    data_cfg.dataset, pipeline.resolve_data_dir(data_cfg.get("data_dir")), config=data_cfg
  )
  loaded = pretrained.load(
    config.pretrained_workdir,
    mesh=mesh,
    random_init=bool(config.random_init),
    seed=int(config.seed),
  )
  if jax.process_index() == 0:
    os.makedirs(workdir, exist_ok=True)
    metrics_lib.write_json(os.path.join(workdir, "config.json"), json.loads(config.to_json()))
  writer = metrics_lib.MetricWriter(workdir)
  res: dict[str, Any] = {
    "pretrained_workdir": loaded.workdir,
    "pretrained_step": loaded.step,
    "random_init": bool(loaded.random_init),
    "method": loaded.config.method,
    "dataset": data_cfg.dataset,
    "model": loaded.config.model.name,
  }
  if config.mode == "linear_eval":
    res.update(linear_evaluation(config, loaded, data_cfg, num_classes, mesh, workdir, writer))
  else:
    res.update(finetune_lib.finetune(config, loaded, data_cfg, num_classes, mesh, workdir, writer))
  res[f"{config.mode}_total_time_s"] = time.time() - t_start
  writer.write(
    loaded.step,
    {k: v for k, v in res.items() if isinstance(v, (int, float)) and not isinstance(v, bool)},
  )
  writer.close()
  return metrics_lib.update_results(workdir, res)
