r"""mode=embed: embeddings and nearest neighbours of a folder of one's own images.

  python -m contrastive_jax.main --config=configs/simclr_cifar10.py --config.mode=embed \
      --config.pretrained_workdir=W --config.dataset=folder:/path/to/images --workdir=W2

Every file under the folder, at any depth (no class structure needed), goes through the eval view
of the pre-training run (decode, shorter side to image_size, centre crop; data/folder.py) and the
frozen encoder (method.embed: features before the projection head). A file that is no image (a
dangling link, an empty or undecodable file, another format) is skipped and counted. Written into
--workdir:

  embeddings.npz     features (n, d) float32, ids (n,) = the file paths relative to the folder,
                     labels (n,) = -1 (no classes), neighbours (n, k) int (rows of the same file),
                     similarities (n, k) cosine, most similar first (report/export.py reads it)
  neighbours.csv     query, rank, neighbour, similarity: the k nearest other images of each image
  neighbours.json    the same as {query: [[neighbour, similarity], ...]}
  retrieval_grid.png config.embed.grid_queries images (seeded) and their nearest neighbours, also
                     in TensorBoard (W2/tensorboard, tag figures/retrieval_grid)
  results.json       num_images, num_skipped, skipped (the first 100 [path, why]), feature_dim, ...

Images are decoded and embedded in chunks, so a folder larger than memory streams through.
"""

import csv
import io
import json
import logging
import os
import tempfile

import jax
import numpy as np

from contrastive_jax import metrics as metrics_lib, pretrained, sharding
from contrastive_jax import workdir as workdir_lib
from contrastive_jax.data import folder
from contrastive_jax.evaluators import features as feats_lib
from contrastive_jax.evaluators import retrieval
from contrastive_jax.protocols import export as export_protocol
from contrastive_jax.report import plots

_CHUNK = 1024  # files decoded at a time (a few MB of uint8 at CIFAR size, ~150 MB at 224 px)
_SHOWN_SKIPPED = 100


def check(config, workdir: str) -> str:
  """The folder root of config.dataset; raises for a missing field or a dataset that is no folder."""
  export_protocol.check(config, workdir)  # validation, pretrained_workdir, not W itself
  if jax.process_count() > 1:
    raise ValueError(
      "config.mode='embed' runs on one process (one host); start it without the multi-host "
      "launcher, on any single machine."
    )
  name = config.get("dataset", None)
  if not folder.is_folder(name):
    raise ValueError(
      f"config.dataset={name!r}: mode=embed reads a folder of images; pass "
      f"--config.dataset=folder:/path/to/images (sub-directories allowed, no classes needed)."
    )
  e = config.embed
  if int(e.grid_queries) < 0 or int(e.grid_neighbours) < 1:
    raise ValueError(
      f"config.embed.grid_queries={e.grid_queries}, grid_neighbours={e.grid_neighbours}: need "
      f">= 0 rows (0: no grid) and >= 1 neighbour per row; e.g. --config.embed.grid_queries=8"
    )
  return name


def eval_view(images: np.ndarray, image_size: int) -> np.ndarray:
  """uint8 (n, S, S, 3) decoded folder images -> the eval view, float32 in [0, 1].

  folder.decode already resized the shorter side to S and cropped the centre: that is the eval
  view data/augment.eval_view leaves unchanged at (S, S) (what the eval pipeline feeds method.embed).
  """
  assert images.shape[1:3] == (image_size, image_size), images.shape
  return images.astype(np.float32) / 255.0


def embed_folder(loaded, name: str, mesh, batch_size: int):
  """(features (n, d), paths (n,), skipped [(path, why)]) of every image under folder `name`."""
  size = int(loaded.config.image_size)
  paths, skipped = folder.list_tree(name)
  skipped = list(skipped)
  step = feats_lib.make_embed_step(loaded.method.embed, mesh)
  feats, kept = [], []
  for start in range(0, len(paths), _CHUNK):
    chunk = paths[start : start + _CHUNK]
    images, ok, bad = folder.decode_paths(chunk, size)
    skipped += bad
    if len(ok):
      feats.append(
        feats_lib.embed_images(step, loaded.state, eval_view(images, size), mesh, batch_size)
      )
      kept += [chunk[i] for i in ok]
  if skipped:
    logging.warning(
      "%s: skipped %d file(s) that are no images, e.g. %s",
      name,
      len(skipped),
      "; ".join(f"{p} ({why})" for p, why in skipped[:3]),
    )
  if not kept:
    raise ValueError(
      f"config.dataset={name!r}: no image could be decoded ({len(skipped)} file(s) skipped"
      + (f", e.g. {skipped[0][0]}: {skipped[0][1]}" if skipped else ", the folder is empty")
      + "). It needs JPEG, PNG, GIF or BMP files."
    )
  return np.concatenate(feats), kept, skipped


def neighbours(features: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
  """(indices (n, k'), cosine similarities (n, k')) of each row's k nearest OTHER rows, k' = min(k, n - 1)."""
  n = features.shape[0]
  k = min(int(k), n - 1)
  if k < 1:
    return np.zeros((n, 0), np.int64), np.zeros((n, 0), np.float32)
  idx, sim = retrieval.nearest_neighbours(features, features, k + 1)
  own = idx == np.arange(n)[:, None]
  # Each row drops itself (usually first; exact duplicates may tie with it), else its last entry.
  drop = np.where(own.any(axis=1), own.argmax(axis=1), k)
  keep = np.ones_like(own)
  keep[np.arange(n), drop] = False
  return idx[keep].reshape(n, k), sim[keep].reshape(n, k)


def _rel(path: str, root: str) -> str:
  return os.path.relpath(path, root) if "://" not in root else path[len(root) :].lstrip("/")


def run(config, workdir: str) -> dict:
  """Embeds the folder of config.dataset with the encoder of config.pretrained_workdir."""
  name = check(config, workdir)
  mesh = sharding.make_mesh()
  loaded = pretrained.load(config.pretrained_workdir, mesh=mesh)
  bs = max(mesh.size, int(config.embed.batch_size) // mesh.size * mesh.size)
  feats, paths, skipped = embed_folder(loaded, name, mesh, bs)
  root = name[len(folder.PREFIX) :]
  root = root if "://" in root else os.path.expanduser(root)
  ids = np.asarray([_rel(p, root) for p in paths])
  idx, sim = neighbours(feats, int(config.embed.k))

  out = workdir_lib.resolve(workdir)
  out.mkdir(parents=True, exist_ok=True)
  metrics_lib.write_json(out / "config.json", json.loads(config.to_json()))
  buf = io.BytesIO()
  np.savez(
    buf,
    features=feats.astype(np.float32),
    labels=-np.ones(len(ids), np.int64),
    ids=ids,
    neighbours=idx,
    similarities=sim.astype(np.float32),
  )
  (out / "embeddings.npz").write_bytes(buf.getvalue())
  rows = io.StringIO()
  w = csv.writer(rows, lineterminator="\n")
  w.writerow(["query", "rank", "neighbour", "similarity"])
  table = {}
  for q in range(len(ids)):
    table[str(ids[q])] = [[str(ids[j]), round(float(s), 6)] for j, s in zip(idx[q], sim[q])]
    for rank, (j, s) in enumerate(zip(idx[q], sim[q]), start=1):
      w.writerow([ids[q], rank, ids[j], f"{float(s):.6f}"])
  (out / "neighbours.csv").write_text(rows.getvalue())
  metrics_lib.write_json(out / "neighbours.json", table)

  res = {
    "pretrained_workdir": loaded.workdir,
    "pretrained_step": loaded.step,
    "method": loaded.config.method,
    "dataset": name,
    "num_images": len(ids),
    "num_skipped": len(skipped),
    "skipped": [[p, why] for p, why in skipped[:_SHOWN_SKIPPED]],
    "feature_dim": int(feats.shape[1]),
    "neighbours_k": int(idx.shape[1]),
    "embed_files": ["embeddings.npz", "neighbours.csv", "neighbours.json"],
  }
  grid = _grid(config, loaded, paths, ids, idx, sim, out)
  if grid is not None:
    res["embed_files"].append("retrieval_grid.png")
    writer = metrics_lib.MetricWriter(out)
    writer.write_images(loaded.step, {"figures/retrieval_grid": out / "retrieval_grid.png"})
    writer.write(loaded.step, {"num_images": len(ids), "num_skipped": len(skipped)})
    writer.close()
  print(
    f"Embedded {len(ids)} images ({len(skipped)} skipped) from {root} into {os.fspath(out)}.",
    flush=True,
  )
  return metrics_lib.update_results(out, res)


def _grid(config, loaded, paths, ids, idx, sim, out):
  """retrieval_grid.png of seeded queries and their nearest neighbours (None without any)."""
  nq = min(int(config.embed.grid_queries), len(paths))
  kk = min(int(config.embed.grid_neighbours), idx.shape[1])
  if nq < 1 or kk < 1:
    return None
  rng = np.random.default_rng(int(config.get("seed", 0)))
  queries = np.sort(rng.choice(len(paths), nq, replace=False))
  shown = np.unique(np.concatenate([queries, idx[queries, :kk].reshape(-1)]))
  size = int(loaded.config.image_size)
  images, ok, _ = folder.decode_paths([paths[i] for i in shown], size)
  assert len(ok) == len(shown), "files that decoded a moment ago no longer do"
  at = {int(i): eval_view(images[j : j + 1], size)[0] for j, i in enumerate(shown)}
  n_idx = idx[queries, :kk]
  with tempfile.TemporaryDirectory() as tmp:  # matplotlib writes local files; out may be gs://
    png = plots.plot_retrieval_grid(
      np.stack([at[int(q)] for q in queries]),
      np.stack([[at[int(j)] for j in row] for row in n_idx]),
      None,
      None,
      None,
      os.path.join(tmp, "grid.png"),
      title=f"Nearest neighbours in {os.path.basename(str(config.dataset).rstrip('/'))}",
      similarities=sim[queries, :kk],
      query_captions=[os.path.basename(str(ids[q])) for q in queries],
      neighbour_captions=[[os.path.basename(str(ids[j])) for j in row] for row in n_idx],
    )
    with open(png, "rb") as f:
      (out / "retrieval_grid.png").write_bytes(f.read())
  return out / "retrieval_grid.png"
