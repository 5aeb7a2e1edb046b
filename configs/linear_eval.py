r"""Linear evaluation (and kNN, retrieval, figures) of a pre-trained encoder; also the shared evaluation defaults.

The encoder is frozen; features are taken BEFORE the projection head. Hyper-parameters of the linear
probe are chosen on `val_fraction` of the TRAINING split (seeded, stratified); the test split is
used once, at the end.

Presets (`--config=configs/linear_eval.py:PRESET`): cpu    (default) linear probe on precomputed
  features ('features' mode), 3 x 2 (lr, wd) grid, 30 epochs; kNN k in (10, 20, 100, 200);
  retrieval, figures. CIFAR-10 with the CPU-preset ResNet takes a few minutes on 2 CPU cores (see
  benchmarks/README_eval.md). paper  SimCLR's protocol (Appendix B.5): 'augmented' mode (random crop
  + flip each step, frozen encoder, features recomputed per batch), Nesterov SGD, 90 epochs, batch
  4096 on ImageNet / 1024 on CIFAR, a learning-rate grid chosen on the held-out split.

Launch:
  python -m contrastive_jax.main --config=configs/linear_eval.py:cpu \
      --config.pretrained_workdir=runs/simclr_cifar10_cpu --workdir=runs/simclr_cifar10_cpu_linear
  Random-init baseline of the same architecture: add --config.random_init=True (and another --workdir).
  Export test embeddings to W2/embeddings_test.npz: --config.export_split=test
Other datasets (transfer): --config.dataset=cifar100 (default: the pre-training dataset).
"""

import ml_collections


def eval_config(mode: str) -> ml_collections.ConfigDict:
  """Fields shared by the linear_eval and finetune configs."""
  c = ml_collections.ConfigDict()
  c.mode = mode  # linear_eval | finetune
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
  c.knn_temperature = ml_collections.FieldReference(
    None, field_type=float
  )  # None: pre-training's knn.temperature
  c.retrieval = True
  c.plots = True
  c.num_plot_queries = 8
  c.export_split = ml_collections.FieldReference(None, field_type=str)  # None | test | train
  return c


def get_config(preset: str = "cpu"):
  c = eval_config("linear_eval")
  if preset == "cpu":
    pass
  elif preset == "paper":
    c.linear.update(
      mode="augmented",
      lrs=(0.1, 0.3, 1.0, 3.0),
      weight_decays=(0.0, 1e-6),
      epochs=90,
      batch_size=1024,
    )
  else:
    raise ValueError(f"Unknown preset {preset!r} for linear_eval.py: use cpu or paper.")
  return c
