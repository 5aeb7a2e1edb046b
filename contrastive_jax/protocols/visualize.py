"""What a linear evaluation shows in TensorBoard: its figures as images, the embedding projector.

- `check(config)`: config.embedding_maps and config.projector_points, before any feature is computed
  (a missing scikit-learn or umap-learn is an error naming the package, never another map);
- `embedding_maps(...)`: one PNG per map of config.embedding_maps (embedding_<map>.png);
- `projector(...)`: the test split's features, labels and thumbnails for TensorBoard's projector
  (W2/tensorboard/projector_config.pbtxt + projector/);
- `to_tensorboard(writer, step, workdir, pngs)`: the PNGs as TensorBoard images (figures/<name>);
- `make_plots(...)`: the figures of a linear evaluation (maps, retrieval grid, pre-training curves,
  confusion matrix), into W2 (local or gs://).
"""

import logging
import os

import numpy as np

from contrastive_jax import workdir as workdir_lib
from contrastive_jax.data import eval_views
from contrastive_jax.evaluators import retrieval
from contrastive_jax.report import maps as maps_lib, plots, projector as projector_lib


def check(config) -> None:
  """Raises for a map name that does not exist or whose package is missing, and a bad point count."""
  maps = config.get("embedding_maps", ("pca",))
  if isinstance(maps, str):
    maps = (maps,)
  for name in maps:
    if name not in maps_lib.MAPS:
      raise ValueError(
        f"config.embedding_maps={tuple(maps)!r}: {name!r} is not a map; use some of {maps_lib.MAPS}, "
        f"e.g. --config.embedding_maps=\"('pca','umap')\"."
      )
    try:
      maps_lib.require(name)
    except ImportError as e:
      raise ImportError(f"config.embedding_maps contains {name!r}: {e}") from e
  points = config.get("projector_points", 0)
  if not isinstance(points, int) or points < 0:
    raise ValueError(
      f"config.projector_points={points!r}: the number of test points for TensorBoard's "
      f"projector must be an int >= 0 (0: no projector export); e.g. --config.projector_points=5000"
    )


def embedding_maps(config, test_x, test_y, names, workdir: str, tag: str) -> list[str]:
  """embedding_<map>.png for each map of config.embedding_maps; returns the paths."""
  maps = config.get("embedding_maps", ("pca",))
  maps = (maps,) if isinstance(maps, str) else tuple(maps)
  titles = {"pca": "PCA", "tsne": "t-SNE", "umap": "UMAP"}
  return [
    plots.plot_embedding_2d(
      test_x,
      test_y,
      names,
      os.path.join(workdir, f"embedding_{name}.png"),
      name,
      title=f"Test embeddings ({titles[name]}; {tag})",
      seed=int(config.seed),
    )
    for name in maps
  ]


def projector(config, data_cfg, workdir: str, test_x, test_y) -> dict | None:
  """The test split in TensorBoard's projector (config.projector_points of it, seeded); None if 0."""
  points = int(config.get("projector_points", 0))
  if points <= 0:
    return None
  n = len(test_y)
  keep = np.arange(n)
  if n > points:
    keep = np.sort(np.random.default_rng(int(config.seed)).choice(n, points, replace=False))
  images = eval_views.images_at(data_cfg, data_cfg.eval_split, keep)
  out = projector_lib.write_projector(
    os.path.join(workdir, "tensorboard"),
    test_x[keep],
    test_y[keep],
    class_names=eval_views.class_names(data_cfg),
    images=images,
    ids=keep,
    tensor_name=f"{data_cfg.eval_split}_features",
    max_points=len(keep),
  )
  logging.info(
    "Projector: %d points of %s in %s.", out["points"], data_cfg.eval_split, out["config"]
  )
  return out


def to_tensorboard(writer, step: int, workdir: str, pngs) -> list[str]:
  """Writes the PNGs (names or paths under workdir) as TensorBoard images; returns their tags."""
  images = {}
  for name in pngs:
    path = name if os.path.isabs(name) else os.path.join(workdir, name)
    images[f"figures/{os.path.splitext(os.path.basename(path))[0]}"] = path
  writer.write_images(step, images)
  return sorted(images)


def make_plots(
  config, loaded, data_cfg, workdir, train_x, train_y, test_x, test_y, test_pred
) -> list:
  """Embedding maps (config.embedding_maps), retrieval grid, pre-training curves, linear-probe confusion matrix (PNG in W2)."""
  names = eval_views.class_names(data_cfg)
  tag = "random init" if loaded.random_init else f"{loaded.config.method}, step {loaded.step}"
  out = embedding_maps(config, test_x, test_y, names, workdir, tag)
  rng = np.random.default_rng(int(config.seed))
  nq = min(int(config.get("num_plot_queries", 8)), len(test_y))
  queries = np.sort(rng.choice(len(test_y), nq, replace=False))
  idx, _ = retrieval.nearest_neighbours(test_x[queries], train_x, 5)
  q_img = eval_views.images_at(data_cfg, data_cfg.eval_split, queries)
  uniq, inv = np.unique(idx.reshape(-1), return_inverse=True)
  n_img = eval_views.images_at(data_cfg, data_cfg.train_split, uniq)[inv]
  out.append(
    plots.plot_retrieval_grid(
      q_img,
      n_img.reshape(*idx.shape, *q_img.shape[1:]),
      test_y[queries],
      train_y[idx],
      names,
      os.path.join(workdir, "retrieval_grid.png"),
      title=f"Test queries, nearest train images ({tag})",
    )
  )
  curves = os.path.join(loaded.workdir, "metrics.jsonl")
  if workdir_lib.resolve(curves).exists():
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
