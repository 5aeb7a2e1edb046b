"""Zero-shot classification and image-text retrieval of an image-text method, on all devices.

`evaluate(method, state, config, mesh, data)` embeds (through method.joint_image / joint_text, the
images and prompts sharded over the mesh) and hands the arrays to evaluators/zero_shot.py:

- zero-shot: config.zero_shot.split of config.zero_shot.dataset (default: the labelled training
  dataset of a 'templates' or 'synthetic' caption source; set it for a TFDS caption dataset, e.g.
  'cifar10' or 'imagenet2012'; '' skips), class embeddings from config.zero_shot.templates (default
  config.text.templates) -> zero_shot_top1 (and top5 with more than 5 classes);
- retrieval: config.zero_shot.retrieval_split of the training caption source ('' skips), each
  image with its first caption -> i2t_recall@K, t2i_recall@K for K in config.zero_shot.recall_ks.
"""

import time

import jax
import numpy as np
from jax.sharding import PartitionSpec as P

from contrastive_jax import sharding
from contrastive_jax.data import captions, image_text, image_text_eval
from contrastive_jax.data import tokenizer as tokenizer_lib
from contrastive_jax.evaluators import features as feats_lib
from contrastive_jax.evaluators import zero_shot as zs_lib


def _per_process_batch(batch_size: int) -> int:
  per = int(batch_size) // jax.process_count()
  local = jax.local_device_count()
  return max(local, per // local * local)


def sharded_embed(fn, mesh):
  """jit(shard_map(fn)): `fn(state, x)` per device on its rows (state replicated, no collectives).

  A per-device program, as in the train step: the text tower's embedding lookup is a gather whose
  output sharding plain jit cannot infer from rows sharded over the mesh.
  """
  body = jax.shard_map(
    fn, mesh=mesh, in_specs=(P(), P(sharding.DATA_AXIS)), out_specs=P(sharding.DATA_AXIS)
  )
  return jax.jit(body)


def embed_texts(method, state, mesh, tokens: np.ndarray, batch_size: int) -> np.ndarray:
  """(n, d) joint embeddings of token rows, in global batches padded to the device count."""
  step = sharded_embed(method.joint_text, mesh)
  n = len(tokens)
  batch = max(jax.device_count(), int(batch_size) // jax.device_count() * jax.device_count())
  out = []
  for start in range(0, n, batch):
    chunk = tokens[start : start + batch]
    real = len(chunk)
    if real < batch:  # one compiled program for all chunks
      chunk = np.concatenate([chunk, np.zeros((batch - real, tokens.shape[1]), tokens.dtype)])
    # Every process holds all prompts: each passes its own slice of the global batch.
    per = batch // jax.process_count()
    local = chunk[jax.process_index() * per : (jax.process_index() + 1) * per]
    e = step(state, sharding.global_batch({"t": local}, mesh)["t"])
    out.append(np.asarray(sharding.to_host(e), np.float32)[:real])
  return np.concatenate(out)


def _pairs(method, state, mesh, batches):
  """(image embeddings, text embeddings, caption ids) of the real rows, in split order."""
  image_step = sharded_embed(method.joint_image, mesh)
  text_step = sharded_embed(method.joint_text, mesh)
  parts = {"image": [], "text": [], "caption_id": [], "index": [], "mask": []}
  for host in batches:
    g = sharding.global_batch(host, mesh)
    e_img, e_txt = image_step(state, g["image"]), text_step(state, g["tokens"])
    rest = {k: g[k] for k in ("caption_id", "index", "mask")}
    e_img, e_txt, rest = sharding.to_host((e_img, e_txt, rest))
    parts["image"].append(np.asarray(e_img, np.float32))
    parts["text"].append(np.asarray(e_txt, np.float32))
    for k in rest:
      parts[k].append(rest[k])
  keep = np.concatenate(parts["mask"]) > 0
  order = np.argsort(np.concatenate(parts["index"])[keep], kind="stable")
  return tuple(np.concatenate(parts[k])[keep][order] for k in ("image", "text", "caption_id"))


def evaluate(method, state, config, mesh, data) -> dict:
  """Zero-shot top-1/top-5 and image-text Recall@K (see the module docstring)."""
  if method.joint_image is None or method.joint_text is None:
    raise ValueError(
      f"The zero_shot evaluator needs an image-text method (joint_image, joint_text); "
      f"{method.name!r} has none. Use evaluators=('knn',) methods with the kNN monitor."
    )
  zs = config.zero_shot
  batch = _per_process_batch(zs.batch_size)
  where = dict(process_index=data.process_index, process_count=data.process_count)
  out, t0, lines = {}, time.time(), []
  dataset = image_text.zero_shot_dataset(config)
  if dataset:
    split = zs.get("split") or config.eval_split
    names = image_text.labelled_class_names(config, dataset)
    temps = captions.templates(zs.get("templates") or config.text.templates)
    tok = tokenizer_lib.get_tokenizer(config.text.tokenizer)
    prompts = tok(captions.fill(temps, names), int(config.text.context_length))
    class_emb = zs_lib.class_embeddings(
      embed_texts(method, state, mesh, prompts, zs.batch_size), len(names), len(temps)
    )
    batches = image_text_eval.labelled_iterator(config, dataset, split, batch_size=batch, **where)
    feats, labels, _ = feats_lib.compute_features(
      sharded_embed(method.joint_image, mesh), state, batches, mesh
    )
    out.update(zs_lib.classify(feats, labels, class_emb))
    lines.append(
      f"zero-shot top-1 {out['zero_shot_top1']:.4f} on {len(labels)} {dataset} {split} images "
      f"({len(names)} classes x {len(temps)} templates)"
    )
  split = zs.get("retrieval_split")
  if split:
    batches = image_text_eval.pairs_iterator(config, split, batch_size=batch, **where)
    img, txt, ids = _pairs(method, state, mesh, batches)
    ks = tuple(sorted({1, *(int(k) for k in zs.recall_ks)}))  # R@1 is always reported
    out.update(zs_lib.image_text_retrieval(img, txt, ids, ks))
    lines.append(
      f"i2t R@1 {out['i2t_recall@1']:.4f}, t2i R@1 {out['t2i_recall@1']:.4f} on {len(ids)} "
      f"{split} pairs"
    )
  if jax.process_index() == 0 and lines:
    print("; ".join(lines) + f" ({time.time() - t0:.0f}s)", flush=True)
  return out
