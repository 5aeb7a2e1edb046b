"""Figures for evaluation reports, written as PNG files.

Each function takes arrays (or a metrics.jsonl path) and an output path and returns the path.
Figures are built with matplotlib's object API (Figure + Agg canvas), never pyplot, so nothing
touches global GUI state and the functions are safe to call from a training process or a thread.
Paths may be URIs (gs://bucket/eval/x.png): files go through etils.epath (contrastive_jax.workdir).
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from contrastive_jax import workdir as workdir_lib
from contrastive_jax.report import maps

_DPI = 120
_CORRECT = dict(color="#1a9641", linestyle="-", label="correct (green, solid)")
_WRONG = dict(color="#d7191c", linestyle="--", label="wrong (red, dashed)")


def _save(fig: Figure, path: str) -> str:
  out = workdir_lib.resolve(path, "figure path")
  out.parent.mkdir(parents=True, exist_ok=True)
  buf = io.BytesIO()  # matplotlib writes local files only: render, then one whole write
  fig.savefig(buf, dpi=_DPI, format="png")
  workdir_lib.write_bytes(out, buf.getvalue())
  return path


def _names(class_names: Sequence[str] | None, num: int) -> list[str]:
  if class_names is None:
    return [str(i) for i in range(num)]
  return [str(n) for n in class_names]


def plot_embedding_2d(
  features,
  labels,
  class_names,
  path: str,
  method: str = "pca",
  *,
  title: str | None = None,
  max_points: int = 5000,
  seed: int = 0,
) -> str:
  """Scatter plot of features projected to 2-D, coloured by class.

  Args:
    features: (n, d) features.
    labels: (n,) int labels indexing class_names.
    class_names: names per class (None: the label numbers).
    path: output PNG.
    method: 'pca' (NumPy SVD), 'tsne' (scikit-learn) or 'umap' (umap-learn); a missing package is
      an ImportError naming it, never another map.
    title: figure title (default names the method).
    max_points: a random subset of this many points is drawn (t-SNE and the scatter stay fast and
      legible).
    seed: subset, t-SNE and UMAP seed.

  Returns:
    path.
  """
  x = np.asarray(features, np.float64)
  y = np.asarray(labels).reshape(-1)
  if x.ndim != 2 or x.shape[0] != y.shape[0]:
    raise ValueError(
      f"plot_embedding_2d: need features (n, d) and labels (n,), got {x.shape} and {y.shape}"
    )
  if method not in maps.MAPS:
    raise ValueError(f"plot_embedding_2d: method must be one of {maps.MAPS}, got {method!r}")
  if x.shape[0] > max_points:
    keep = np.sort(np.random.default_rng(seed).choice(x.shape[0], max_points, replace=False))
    x, y = x[keep], y[keep]
  names = _names(class_names, int(y.max()) + 1 if y.size else 0)
  xy, xlabel, ylabel, how = maps.project_2d(x, method, seed)

  fig = Figure(figsize=(8, 6.5), layout="constrained")
  ax = fig.add_subplot()
  classes = np.unique(y)
  cmap = _class_colours(len(names))
  for c in classes:
    sel = y == c
    label = names[c] if c < len(names) else str(c)
    ax.scatter(
      xy[sel, 0], xy[sel, 1], s=12, alpha=0.75, color=cmap[c % len(cmap)], label=label, linewidths=0
    )
  ax.set_xlabel(xlabel)
  ax.set_ylabel(ylabel)
  ax.set_title(title or f"Embedding ({how}, {x.shape[0]} points, {len(classes)} classes)")
  ax.grid(alpha=0.25)
  if len(classes) <= 20:
    ax.legend(
      title="class", loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False, markerscale=1.8
    )
  return _save(fig, path)


def _class_colours(num: int) -> list:
  from matplotlib import colormaps  # pylint: disable=g-import-not-at-top

  if num <= 10:
    return list(colormaps["tab10"].colors)
  if num <= 20:
    return list(colormaps["tab20"].colors)
  return [colormaps["turbo"](i / max(num - 1, 1)) for i in range(num)]


def _show_image(ax, image) -> None:
  img = np.asarray(image, np.float32)
  if img.ndim == 3 and img.shape[-1] == 1:
    img = img[..., 0]
  if img.ndim == 2:
    ax.imshow(np.clip(img, 0, 1), cmap="gray", vmin=0, vmax=1)
  else:
    ax.imshow(np.clip(img, 0, 1))
  ax.set_xticks([])
  ax.set_yticks([])


def _frame(ax, colour, linestyle, width=4.0) -> None:
  for spine in ax.spines.values():
    spine.set_visible(True)
    spine.set_edgecolor(colour)
    spine.set_linestyle(linestyle)
    spine.set_linewidth(width)


def plot_retrieval_grid(
  query_images,
  neighbour_images,
  query_labels,
  neighbour_labels,
  class_names,
  path: str,
  *,
  title: str = "Nearest neighbours of query images",
  similarities=None,
  query_captions=None,
  neighbour_captions=None,
) -> str:
  """One row per query: the query image, then its nearest gallery images in order.

  With labels, correct neighbours (same label as the query) get a solid green frame and a tick
  mark; wrong ones a dashed red frame and a cross, so the grid reads without colour vision too.
  Without labels (an unlabelled image folder), frames are neutral and captions carry the rank,
  the cosine similarity and a short name.

  Args:
    query_images: (q, H, W, C) in [0, 1] (C = 1 or 3; (q, H, W) is grayscale).
    neighbour_images: (q, k, H, W, C).
    query_labels: (q,) ints, or None (no labels).
    neighbour_labels: (q, k) ints, or None (with query_labels None).
    class_names: names per class (None: the label numbers).
    path: output PNG.
    title: figure title.
    similarities: optional (q, k) cosine similarities, shown in the captions.
    query_captions: optional (q,) strings (e.g. file names) instead of the class name.
    neighbour_captions: optional (q, k) strings.

  Returns:
    path.
  """
  qi = np.asarray(query_images)
  ni = np.asarray(neighbour_images)
  labelled = query_labels is not None
  if labelled != (neighbour_labels is not None):
    raise ValueError("plot_retrieval_grid: give both query_labels and neighbour_labels, or neither")
  q, k = ni.shape[:2]
  ql = np.asarray(query_labels).reshape(-1) if labelled else np.zeros(q, np.int64)
  nl = np.asarray(neighbour_labels) if labelled else np.zeros((q, k), np.int64)
  if nl.ndim == 1:
    nl = nl[:, None]
  sims = None if similarities is None else np.asarray(similarities, np.float64)
  if (
    ni.shape[:2] != nl.shape
    or qi.shape[0] != ql.shape[0]
    or ql.shape[0] != nl.shape[0]
    or (sims is not None and sims.shape != nl.shape)
  ):
    raise ValueError(
      f"plot_retrieval_grid: shapes disagree: query_images {qi.shape}, neighbour_images {ni.shape}, "
      f"query_labels {ql.shape}, neighbour_labels {nl.shape}"
      + (f", similarities {sims.shape}" if sims is not None else "")
    )
  names = _names(class_names, int(max(ql.max(), nl.max())) + 1)
  cell = 1.7
  fig = Figure(figsize=(cell * (k + 1) + 0.4, cell * q + 1.1), layout="constrained")
  axes = fig.subplots(q, k + 1, squeeze=False)
  for r in range(q):
    ax = axes[r, 0]
    _show_image(ax, qi[r])
    _frame(ax, "black", "-", 2.0)
    caption = query_captions[r] if query_captions is not None else names[ql[r]]
    ax.set_title(f"query: {_short(caption)}", fontsize=9, fontweight="bold")
    for c in range(k):
      ax = axes[r, c + 1]
      _show_image(ax, ni[r, c])
      sim = f" {sims[r, c]:.2f}" if sims is not None else ""
      text = neighbour_captions[r][c] if neighbour_captions is not None else names[nl[r, c]]
      if labelled:
        ok = nl[r, c] == ql[r]
        style = _CORRECT if ok else _WRONG
        _frame(ax, style["color"], style["linestyle"])
        mark = "✓" if ok else "✗"
        ax.set_title(f"{c + 1}. {mark}{sim} {_short(text)}", fontsize=9, color=style["color"])
      else:
        _frame(ax, "#555555", "-", 1.5)
        ax.set_title(f"{c + 1}.{sim} {_short(text)}", fontsize=8)
  if not labelled:
    fig.suptitle(f"{title} (cosine similarity above each neighbour)", fontsize=11)
    return _save(fig, path)
  precision = float((nl == ql[:, None]).mean())
  fig.suptitle(f"{title} (precision@{k} = {100 * precision:.0f}%)", fontsize=11)
  handles = [
    Line2D([], [], color=s["color"], linestyle=s["linestyle"], linewidth=3, label=s["label"])
    for s in (_CORRECT, _WRONG)
  ]
  fig.legend(handles=handles, loc="outside lower center", ncol=2, frameon=False, fontsize=9)
  return _save(fig, path)


def _short(text, width: int = 18) -> str:
  """A caption that fits a cell: the end of a long name (file names differ at the end)."""
  text = str(text)
  return text if len(text) <= width else "…" + text[-(width - 1) :]


def _read_metrics(metrics_jsonl_path: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
  """{key: (steps, values)} from a metrics.jsonl file; last value wins per step (resumed runs append)."""
  series: dict[str, dict[int, float]] = {}
  with workdir_lib.resolve(metrics_jsonl_path, "metrics path").open("r") as f:
    for line in f:
      try:
        row = json.loads(line)
      except json.JSONDecodeError:  # a line cut short by a crash: skip it, keep the rest
        continue
      if not isinstance(row, dict) or "step" not in row:
        continue
      step = int(row["step"])
      for key, value in row.items():
        if key != "step" and isinstance(value, (int, float)) and math.isfinite(value):
          series.setdefault(key, {})[step] = float(value)
  return {k: (np.array(sorted(v)), np.array([v[s] for s in sorted(v)])) for k, v in series.items()}


_ACCURACY_KEYS = ("knn_top1", "probe_accuracy", "probe_top1", "linear_top1")
_LR_KEYS = ("learning_rate", "lr")


def plot_training_curves(metrics_jsonl_path: str, path: str, *, title: str | None = None) -> str:
  """Loss, accuracy (knn_top1, probe_accuracy) and learning rate against step, one panel each (those present).

  Args:
    metrics_jsonl_path: a workdir's metrics.jsonl (one JSON object per line with 'step' and
      scalars).
    path: output PNG.
    title: figure title (default: the workdir name).

  Returns:
    path.
  """
  series = _read_metrics(metrics_jsonl_path)
  panels = []
  if "loss" in series:
    panels.append(("Training loss", "loss", ["loss"], False))
  acc = [k for k in _ACCURACY_KEYS if k in series]
  if acc:
    panels.append(("Accuracy", "accuracy (%)", acc, True))
  lr = [k for k in _LR_KEYS if k in series][:1]
  if lr:
    panels.append(("Learning rate", "learning rate", lr, False))
  if not panels:
    raise ValueError(f"{metrics_jsonl_path}: no loss, accuracy or learning-rate values to plot")

  fig = Figure(figsize=(5.2 * len(panels), 4.2), layout="constrained")
  axes = fig.subplots(1, len(panels), squeeze=False)[0]
  for ax, (name, ylabel, keys, percent) in zip(axes, panels):
    for key in keys:
      steps, values = series[key]
      if percent and values.max() <= 1.0:
        values = 100 * values
      marker = "o" if len(steps) <= 50 else None
      (line,) = ax.plot(steps, values, marker=marker, markersize=4, linewidth=1.6, label=key)
      if percent:  # the last accuracy is the number people look for
        ax.annotate(
          f"{values[-1]:.1f}%",
          (steps[-1], values[-1]),
          textcoords="offset points",
          xytext=(-4, 6),
          ha="right",
          fontsize=9,
          color=line.get_color(),
        )
    ax.set_title(name)
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    if len(keys) > 1 or percent:
      ax.legend(frameon=False)
  workdir = workdir_lib.resolve(metrics_jsonl_path, "metrics path").parent.name
  fig.suptitle(title or f"Training curves: {workdir}")
  return _save(fig, path)


def plot_confusion_matrix(
  y_true, y_pred, class_names, path: str, *, title: str = "Confusion matrix"
) -> str:
  """Confusion matrix normalised per true class (rows sum to 1), with counts written in the cells (<= 20 classes).

  Args:
    y_true: (n,) true labels; y_pred: (n,) predicted labels.
    class_names: names per class (None: the label numbers); its length sets the number of classes.
    path: output PNG.
    title: figure title (the overall accuracy is appended).

  Returns:
    path.
  """
  t = np.asarray(y_true).reshape(-1).astype(np.int64)
  p = np.asarray(y_pred).reshape(-1).astype(np.int64)
  if t.shape != p.shape:
    raise ValueError(f"plot_confusion_matrix: y_true {t.shape} and y_pred {p.shape} differ")
  num = len(class_names) if class_names is not None else int(max(t.max(), p.max())) + 1
  names = _names(class_names, num)
  counts = np.zeros((num, num), np.int64)
  np.add.at(counts, (t, p), 1)
  rows = counts.sum(axis=1, keepdims=True)
  frac = counts / np.maximum(rows, 1)

  side = min(max(5.0, 0.55 * num + 2.5), 16.0)
  fig = Figure(figsize=(side + 1.2, side), layout="constrained")
  ax = fig.add_subplot()
  im = ax.imshow(frac, cmap="Blues", vmin=0.0, vmax=1.0)
  fig.colorbar(im, ax=ax, shrink=0.8, label="fraction of the true class")
  if num <= 40:
    ax.set_xticks(range(num), names, rotation=45, ha="right", rotation_mode="anchor")
    ax.set_yticks(range(num), names)
  ax.set_xlabel("predicted class")
  ax.set_ylabel("true class")
  accuracy = float(np.trace(counts)) / max(t.size, 1)
  ax.set_title(f"{title} (accuracy {100 * accuracy:.1f}%, {t.size} examples)")
  if num <= 20:
    for i in range(num):
      for j in range(num):
        if counts[i, j] or i == j:
          ax.text(
            j,
            i,
            f"{counts[i, j]}\n{100 * frac[i, j]:.0f}%",
            ha="center",
            va="center",
            fontsize=8,
            color="white" if frac[i, j] > 0.55 else "black",
          )
  return _save(fig, path)
