"""Collects a batch-size sweep into a table (Markdown + CSV) and a figure (PNG).

  python -m contrastive_jax.batch_scaling --sweep_dir=runs/sweep_cpu --out=docs/batch_scaling

reads W/*/results.json (with W/*/sweep_run.json, or config.json, for the run's values) and writes
OUT.md, OUT.csv and OUT.png: top-1 against batch size (log2 axis), one line per epoch budget, linear
and sqrt LR scaling side by side. The paper's published points (SimCLR Table B.1) are drawn beside
this code's only when the dataset and setting match (imagenet2012, ResNet-50). The command-line
flags are defined in batch_scaling/__main__.py, not here: importing this module defines none.
"""

import csv
import glob
import json
import math
import os
from typing import Any

# SimCLR (Chen et al. 2020, arXiv:2002.05709v3), Appendix B.1, Table B.1: ImageNet linear evaluation
# top-1 (%) of ResNet-50 (1x) pre-trained with LARS, temperature 0.1, by batch size and epochs;
# (linear LR scaling 0.3 x B/256, square-root LR scaling 0.075 x sqrt(B)). The linear column is the
# data of the paper's Figure 9.
PAPER_TABLE_B1 = {
  # batch: {epochs: (linear, sqrt)}
  256: {100: (57.5, 62.8), 200: (61.9, 64.3), 400: (64.7, 65.7), 800: (66.6, 66.5)},
  512: {100: (60.7, 63.8), 200: (64.0, 65.6), 400: (66.2, 66.7), 800: (67.8, 67.4)},
  1024: {100: (62.8, 64.3), 200: (65.3, 66.1), 400: (67.2, 67.2), 800: (68.5, 68.3)},
  2048: {100: (64.0, 64.7), 200: (66.1, 66.8), 400: (68.1, 67.9), 800: (68.9, 68.8)},
  4096: {100: (64.6, 64.5), 200: (66.5, 66.8), 400: (68.2, 68.0), 800: (68.9, 69.1)},
  8192: {100: (64.8, 64.8), 200: (66.6, 67.0), 400: (67.8, 68.3), 800: (69.0, 69.1)},
}
PAPER_SOURCE = "SimCLR (Chen et al. 2020), Table B.1: ImageNet, ResNet-50, linear evaluation top-1"
PAPER_SETTING = {"dataset": "imagenet2012", "model": "resnet50"}
RULES = ("linear", "sqrt")
METRICS = ("linear_top1", "knn_top1")  # the first one a run has is plotted


def paper_points(rule: str) -> dict[int, dict[int, float]]:
  """{epochs: {batch: top-1 %}} of Table B.1 for 'linear' or 'sqrt'."""
  k = RULES.index(rule)
  out: dict[int, dict[int, float]] = {}
  for b, row in PAPER_TABLE_B1.items():
    for ep, vals in row.items():
      out.setdefault(ep, {})[b] = vals[k]
  return out


def _read(path: str) -> dict | None:
  try:
    with open(path, encoding="utf-8") as f:
      return json.load(f)
  except (OSError, ValueError):
    return None


def load_runs(sweep_dir: str) -> list[dict]:
  """One row per run directory with a results.json: its values, metric and status."""
  rows = []
  for res_path in sorted(glob.glob(os.path.join(sweep_dir, "*", "results.json"))):
    run_dir = os.path.dirname(res_path)
    res = _read(res_path) or {}
    meta = _read(os.path.join(run_dir, "sweep_run.json"))
    if meta is None:
      cfg = _read(os.path.join(run_dir, "config.json")) or {}
      meta = {
        "batch_size": cfg.get("batch_size"),
        "epochs": cfg.get("total_epochs"),
        "lr_scaling": cfg.get("optim", {}).get("lr_scaling"),
        "temperature": cfg.get("method_args", {}).get("temperature"),
        "dataset": cfg.get("dataset"),
        "model": cfg.get("model", {}).get("name"),
        "grad_cache_chunk": cfg.get("grad_cache_chunk", 0),
      }
    metric = next((m for m in METRICS if m in res), None)
    rows.append(
      {
        "name": os.path.basename(run_dir),
        "batch_size": int(meta["batch_size"]),
        "epochs": float(meta["epochs"]),
        "lr_scaling": meta["lr_scaling"],
        "temperature": float(meta["temperature"]),
        "dataset": meta.get("dataset"),
        "model": meta.get("model"),
        "grad_cache_chunk": int(meta.get("grad_cache_chunk") or 0),
        "peak_lr": _peak_lr(meta),
        "metric": metric,
        "top1": 100.0 * float(res[metric]) if metric else float("nan"),
        "steps": res.get("steps"),
        "train_time_s": res.get("train_time_s"),
        "finished": "train_time_s" in res,
      }
    )
  rows.sort(
    key=lambda r: (
      r["dataset"] or "",
      r["epochs"],
      r["lr_scaling"],
      r["temperature"],
      r["batch_size"],
    )
  )
  return rows


def _peak_lr(meta: dict) -> float | None:
  base, rule, b = meta.get("optim.base_lr"), meta.get("lr_scaling"), meta.get("batch_size")
  if base is None or b is None:
    return None
  return {"linear": base * b / 256.0, "sqrt": base * math.sqrt(b)}.get(rule, base)


def _fmt(x: Any, nd: int = 1) -> str:
  if x is None or (isinstance(x, float) and not math.isfinite(x)):
    return "-"
  if isinstance(x, float):
    return f"{x:g}" if nd == 0 else f"{x:.{nd}f}"
  return str(x)


COLUMNS = (
  "name",
  "batch_size",
  "epochs",
  "lr_scaling",
  "temperature",
  "peak_lr",
  "grad_cache_chunk",
  "steps",
  "train_time_s",
  "metric",
  "top1",
  "finished",
)


def write_csv(rows: list[dict], path: str) -> None:
  with open(path, "w", newline="", encoding="utf-8") as f:
    w = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore")
    w.writeheader()
    w.writerows(rows)


def markdown_table(rows: list[dict]) -> str:
  """One row per run, plus a pivot (batch size x epochs, linear / sqrt) like the paper's Table B.1."""
  head = (
    "| run | batch | epochs | LR rule | T | peak LR | grad-cache chunk | steps | time (s) | "
    "top-1 (%) |"
  )
  lines = [head, "|" + "---|" * 10]
  for r in rows:
    top1 = _fmt(r["top1"]) + ("" if r["finished"] else " (unfinished)")
    metric = f" {r['metric'].split('_')[0]}" if r["metric"] else ""
    lines.append(
      f"| {r['name']} | {r['batch_size']} | {_fmt(r['epochs'], 0)} | {r['lr_scaling']} | "
      f"{_fmt(r['temperature'], 2)} | {_fmt(r['peak_lr'], 3)} | {r['grad_cache_chunk'] or '-'} | "
      f"{_fmt(r['steps'])} | {_fmt(r['train_time_s'], 1)} | {top1}{metric} |"
    )
  epochs = sorted({r["epochs"] for r in rows})
  batches = sorted({r["batch_size"] for r in rows})
  if epochs and batches:
    lines += [
      "",
      "Top-1 (%), linear / sqrt LR scaling:",
      "",
      "| batch \\ epochs | " + " | ".join(_fmt(e, 0) for e in epochs) + " |",
      "|" + "---|" * (len(epochs) + 1),
    ]
    for b in batches:
      cells = []
      for e in epochs:
        vals = []
        for rule in RULES:
          v = [
            r["top1"]
            for r in rows
            if r["batch_size"] == b
            and r["epochs"] == e
            and r["lr_scaling"] == rule
            and r["finished"]
          ]
          vals.append(_fmt(v[0]) if v else "-")
        cells.append(" / ".join(vals))
      lines.append(f"| {b} | " + " | ".join(cells) + " |")
  return "\n".join(lines) + "\n"


def paper_matches(rows: list[dict]) -> bool:
  return bool(rows) and all(
    r.get("dataset") == PAPER_SETTING["dataset"] and r.get("model") == PAPER_SETTING["model"]
    for r in rows
  )


def plot(rows: list[dict], path: str, *, title: str = "") -> None:
  """top-1 vs batch size (log2), one line per epoch budget, linear | sqrt panels (PNG, Agg)."""
  from matplotlib.figure import Figure  # pylint: disable=g-import-not-at-top
  from matplotlib.backends.backend_agg import FigureCanvasAgg  # pylint: disable=g-import-not-at-top

  fig = Figure(figsize=(11, 4.2), dpi=110)
  FigureCanvasAgg(fig)
  axes = fig.subplots(1, 2, sharey=True)
  show_paper = paper_matches(rows)
  epochs = sorted({r["epochs"] for r in rows})
  # One colour per epoch budget, shared by this code's line (solid) and the paper's (dashed).
  all_epochs = sorted(
    set(epochs) | ({float(e) for e in paper_points("linear")} if show_paper else set())
  )
  color = {e: f"C{i % 10}" for i, e in enumerate(all_epochs)}
  for ax, rule in zip(axes, RULES):
    for e in epochs:
      pts = sorted(
        (r["batch_size"], r["top1"])
        for r in rows
        if r["lr_scaling"] == rule and r["epochs"] == e and r["finished"]
      )
      if pts:
        ax.plot(
          [p[0] for p in pts],
          [p[1] for p in pts],
          "o-",
          color=color[e],
          label=f"this code, {_fmt(e, 0)} ep",
        )
    if show_paper:
      for e, pts in sorted(paper_points(rule).items()):
        b = sorted(pts)
        ax.plot(
          b,
          [pts[x] for x in b],
          "s--",
          color=color[float(e)],
          alpha=0.5,
          label=f"paper (linear eval), {e} ep",
        )
    ax.set_xscale("log", base=2)
    ax.set_xlabel("batch size")
    ax.set_title(
      f"{rule} LR scaling: peak LR = base x " + ("B/256" if rule == "linear" else "sqrt(B)")
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
  metric = next((r["metric"] for r in rows if r["metric"]), "top1")
  axes[0].set_ylabel(
    {"knn_top1": "kNN top-1 (%)", "linear_top1": "linear top-1 (%)"}.get(metric, metric)
  )
  if title:
    fig.suptitle(title)
  fig.tight_layout()
  fig.savefig(path)


def collect(sweep_dir: str, out: str | None = None) -> dict:
  """Writes OUT.md, OUT.csv, OUT.png; returns {'rows', 'md', 'csv', 'png'}."""
  rows = load_runs(sweep_dir)
  if not rows:
    raise FileNotFoundError(f"No {sweep_dir}/*/results.json: is --sweep_dir the sweep's workdir?")
  out = out or os.path.join(sweep_dir, "batch_scaling")
  os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
  write_csv(rows, out + ".csv")
  md = markdown_table(rows)
  if paper_matches(rows):
    md += "\nPublished (" + PAPER_SOURCE + "), linear / sqrt:\n\n" + paper_markdown()
  with open(out + ".md", "w", encoding="utf-8") as f:
    f.write(md)
  ds = {r["dataset"] for r in rows}
  plot(
    rows,
    out + ".png",
    title=f"SimCLR batch-size scaling: {', '.join(sorted(map(str, ds)))}, "
    f"{', '.join(sorted({str(r['model']) for r in rows}))}",
  )
  return {"rows": rows, "md": out + ".md", "csv": out + ".csv", "png": out + ".png"}


def paper_markdown() -> str:
  eps = (100, 200, 400, 800)
  lines = ["| batch \\ epochs | " + " | ".join(map(str, eps)) + " |", "|" + "---|" * 5]
  for b, row in PAPER_TABLE_B1.items():
    lines.append(f"| {b} | " + " | ".join(f"{row[e][0]} / {row[e][1]}" for e in eps) + " |")
  return "\n".join(lines) + "\n"
