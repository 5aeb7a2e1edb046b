"""Every field of an evaluation run (mode linear_eval or finetune) of a pre-trained workdir.

An evaluation run reads the pre-training config from `pretrained_workdir`; its data fields default
to None, meaning "the pre-training run's value" (set them to transfer, e.g. dataset=cifar100).

The `export` and `embed` groups serve the modes of the same names (protocols/export.py,
protocols/embed.py); every config, evaluation or pre-training, has them (`add_export_embed`), so
`--config.mode=export --config.pretrained_workdir=W` works with any method's config.
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
      checkpoint_every_steps=500,  # fine-tuning checkpoints to W2/checkpoints (preemption resume)
    )
  )
  c.knn_ks = (10, 20, 100, 200)
  # None: the pre-training run's knn.temperature.
  c.knn_temperature = ml_collections.FieldReference(None, field_type=float)
  c.retrieval = True
  c.plots = True
  c.num_plot_queries = 8
  c.export_split = ml_collections.FieldReference(None, field_type=str)  # None | test | train
  # 2-D maps of the test embeddings, one PNG each (embedding_<name>.png): pca (NumPy), tsne
  # (scikit-learn), umap (umap-learn). t-SNE and UMAP take minutes on a large split; opt in with
  # --config.embedding_maps="('pca','tsne','umap')".
  c.embedding_maps = ("pca",)
  # Points of the test split in TensorBoard's embedding projector (W2/tensorboard; 0: none).
  c.projector_points = 5000
  add_export_embed(c)
  return c


def export_group() -> ml_collections.ConfigDict:
  """mode=export: the encoder as safetensors + JSON, and its embed function through jax.export."""
  return ml_collections.ConfigDict(
    dict(
      batch_size=8,  # the exported function's fixed input: (batch_size, S, S, 3) float32 in [0, 1]
      platforms=("cpu", "cuda", "tpu"),  # one serialised function that runs on each of these
    )
  )


def embed_group() -> ml_collections.ConfigDict:
  """mode=embed: the images under config.dataset=folder:ROOT, their neighbours and a grid PNG."""
  return ml_collections.ConfigDict(
    dict(
      k=10,  # nearest neighbours written per image (neighbours.csv / .json)
      batch_size=256,  # images per embedding batch (global; rounded to the devices)
      grid_queries=8,  # rows of retrieval_grid.png (queries drawn with config.seed)
      grid_neighbours=5,  # neighbours shown per row
    )
  )


def add_export_embed(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """Adds pretrained_workdir (if missing) and the export / embed groups to any config."""
  if "pretrained_workdir" not in c:
    c.pretrained_workdir = ml_collections.FieldReference(None, field_type=str)
  c.export = export_group()
  c.embed = embed_group()
  return c
