"""Evaluation entry point over any pre-training workdir: `evaluate(config, workdir)`.

  python -m contrastive_jax.main --config=configs/linear_eval.py:cpu --config.pretrained_workdir=W --workdir=W2
  python -m contrastive_jax.main --config=configs/finetune.py:cpu --config.pretrained_workdir=W \
      --config.label_fraction=0.1 --workdir=W3

The set-up both protocols share (the pre-trained encoder from W, the data fields, W2's config.json
and metric writer), then config.mode's protocol: 'linear_eval' (protocols/linear_eval.py: frozen
encoder; kNN, linear probe, retrieval, export, figures) or 'finetune' (protocols/finetune.py, on
config.label_fraction of the labels).

Everything lands in W2: results.json (metrics.update_results), metrics.jsonl + TensorBoard
(MetricWriter), config.json, PNGs, embeddings_{split}.npz, subset_{pct}pct_seed{seed}.txt.
"""

import json
import os
import time
from typing import Any

import jax

from contrastive_jax import metrics as metrics_lib, pretrained, sharding, validate
from contrastive_jax import workdir as workdir_lib
from contrastive_jax.data import catalog, eval_views
from contrastive_jax.protocols import finetune, linear_eval

MODES = ("linear_eval", "finetune")


def evaluate(config, workdir: str) -> dict:
  """Evaluates the encoder of config.pretrained_workdir (or a random init of it); returns results.json's dict."""
  if config.mode not in MODES:
    raise ValueError(f"config.mode={config.mode!r}: protocols.evaluate handles {MODES}.")
  validate.check(config)  # every bad value at once, before any data or compilation
  if not config.get("pretrained_workdir", None):
    raise ValueError(
      "Set --config.pretrained_workdir=W (a pre-training workdir with config.json and "
      "checkpoints/)."
    )
  if config.mode == "linear_eval":
    linear_eval.check_config(config)
  # Local or a URI (gs://bucket/eval): every file below goes through epath (contrastive_jax.workdir).
  workdir = os.fspath(workdir_lib.resolve(workdir))
  t_start = time.time()
  mesh = sharding.make_mesh()
  data_cfg = eval_views.data_config(config, pretrained.load_config(config.pretrained_workdir))
  num_classes, _, _ = catalog.dataset_info(
    data_cfg.dataset, catalog.resolve_data_dir(data_cfg.get("data_dir")), config=data_cfg
  )
  loaded = pretrained.load(
    config.pretrained_workdir,
    mesh=mesh,
    random_init=bool(config.random_init),
    seed=int(config.seed),
  )
  if jax.process_index() == 0:
    workdir_lib.resolve(workdir).mkdir(parents=True, exist_ok=True)
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
    res.update(
      linear_eval.linear_evaluation(config, loaded, data_cfg, num_classes, mesh, workdir, writer)
    )
  else:
    res.update(finetune.finetune(config, loaded, data_cfg, num_classes, mesh, workdir, writer))
  if res.get("preempted"):  # SIGTERM: the protocol saved its own checkpoint; no results.json yet
    writer.close()
    return res
  res[f"{config.mode}_total_time_s"] = time.time() - t_start
  writer.write(
    loaded.step,
    {k: v for k, v in res.items() if isinstance(v, (int, float)) and not isinstance(v, bool)},
  )
  writer.close()
  return metrics_lib.update_results(workdir, res)
