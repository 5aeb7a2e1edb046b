"""Every field of an evaluation run (mode linear_eval or finetune) of a pre-trained workdir.

An evaluation run reads the pre-training config from `pretrained_workdir`; its data fields default
to None, meaning "the pre-training run's value" (set them to transfer, e.g. dataset=cifar100).
"""

import ml_collections

MODES = ("linear_eval", "finetune")


def eval_config(mode: str) -> ml_collections.ConfigDict:
  """The defaults of a linear-evaluation (kNN, retrieval, figures too) or fine-tuning run.

  Args:
    mode: linear_eval | finetune.

  Returns:
    The config; configs/linear_eval.py and configs/finetune.py start from it.
  """
  if mode not in MODES:
    raise ValueError(f"evaluation.eval_config mode={mode!r}: use one of {MODES}.")
  c = ml_collections.ConfigDict()
  c.mode = mode
  c.pretrained_workdir = ml_collections.FieldReference(None, field_type=str)
  # Data: None -> the pre-training config's value.
  c.dataset = ml_collections.FieldReference(None, field_type=str)
  c.data_dir = ml_collections.FieldReference(None, field_type=str)
  c.train_split = ml_collections.FieldReference(None, field_type=str)
  c.eval_split = ml_collections.FieldReference(None, field_type=str)
  c.label_fraction = 1.0  # share of training labels (class-balanced subset)
  c.seed = 0
  c.val_fraction = 0.1  # held out of TRAIN to choose hyper-parameters
  c.eval_batch_size = 512  # feature extraction / test batches (global)
  c.random_init = False  # evaluate a random init of the same architecture
  c.linear = ml_collections.ConfigDict(
    dict(
      mode="features",  # features (fast) | augmented (SimCLR protocol)
      lrs=(0.01, 0.1, 1.0),
      weight_decays=(0.0, 1e-4),
      epochs=30,
      batch_size=1024,
      optimizer="sgd_nesterov",  # sgd_nesterov | lars
      normalization="standardize",
      refit=True,  # 'features' mode: retrain the chosen pair on train + val
      steps=-1,  # 'augmented' mode: > 0 overrides epochs
      crop_area_min=0.08,
    )
  )
  c.finetune = ml_collections.ConfigDict(
    dict(
      lr=0.05,
      lr_scaling="none",
      weight_decay=0.0,
      epochs=30,
      batch_size=256,
      optimizer="sgd_nesterov",
      from_projection_layer=0,  # 0: encoder only; 1: keep the first projection layer (v2)
      warmup_epochs=0.0,
      steps=-1,
      crop_area_min=0.08,
      log_every_steps=20,
    )
  )
  c.knn_ks = (10, 20, 100, 200)
  # None: the pre-training run's knn.temperature.
  c.knn_temperature = ml_collections.FieldReference(None, field_type=float)
  c.retrieval = True
  c.plots = True
  c.num_plot_queries = 8
  c.export_split = ml_collections.FieldReference(None, field_type=str)  # None | test | train
  return c
