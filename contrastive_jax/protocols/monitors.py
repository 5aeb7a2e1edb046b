"""Evaluations that run inside a pre-training run, one function per name in `Method.evaluators`.

Each is `name(method, state, config, mesh, data) -> {metric: float}`: it embeds what it needs through
the method (on all devices) and hands arrays to an algorithm in evaluators/. The loop calls the
method's evaluators at step 0 (results get a `_random_init` suffix), every eval interval and at the
end; a new evaluator is one function here plus its algorithm module.
"""

import time

import jax

from contrastive_jax.evaluators import features as feats_lib
from contrastive_jax.evaluators import knn as knn_lib
from contrastive_jax.protocols import image_text


def knn(method, state, config, mesh, data) -> dict:
  """kNN top-1 (k=config.knn.k): config.knn.test_split (default eval_split) against a memory bank
  of config.knn.bank_split (default train_split); TFDS slices such as 'train[:10000]' work."""
  bank_split = config.knn.get("bank_split") or config.train_split
  test_split = config.knn.get("test_split") or config.eval_split
  embed_step = feats_lib.make_embed_step(method.embed, mesh)
  t0 = time.time()
  bank = feats_lib.compute_features(embed_step, state, data.eval_batches(bank_split), mesh)
  test = feats_lib.compute_features(embed_step, state, data.eval_batches(test_split), mesh)
  res = knn_lib.knn_classify(
    bank[0],
    bank[1],
    test[0],
    test[1],
    num_classes=data.num_classes,
    ks=(int(config.knn.k),),
    temperature=float(config.knn.temperature),
    mesh=mesh,
  )
  if jax.process_index() == 0:
    print(
      f"kNN (k={int(config.knn.k)}) top-1 {res['knn_top1']:.4f}: {len(test[0])} {test_split} "
      f"images vs a bank of {len(bank[0])} {bank_split} images ({time.time() - t0:.0f}s)",
      flush=True,
    )
  return {"knn_top1": float(res["knn_top1"])}


def zero_shot(method, state, config, mesh, data) -> dict:
  """Zero-shot top-1/top-5 on config.zero_shot's labelled split and image-text Recall@K on its
  held-out pairs, for image-text methods (CLIP, SigLIP); see protocols/image_text.py."""
  return image_text.evaluate(method, state, config, mesh, data)
