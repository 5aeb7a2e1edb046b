"""What a linear evaluation keeps in its workdir W2 to resume after a preemption.

- features_{split}.npz: the frozen encoder's features of a split (most of the cost of the
  'features' probe, and of kNN and retrieval);
- linear_probe_state.npz: the augmented probe's heads and optimiser states after its last finished
  step (the 'augmented' probe runs the encoder on every step, so it is the long part there).

Each file holds a key: the JSON of everything its contents depend on (the encoder's workdir, step
and init, the data, the probe's settings). A file written under another key is ignored, with a
warning, and the work redone; a stale file can never leak into a new evaluation.

Writes are whole: tmp + rename locally, one object upload on a URI (atomic on object stores).
"""

from __future__ import annotations

import io
import json
import logging
import os
from typing import Any

import numpy as np

from contrastive_jax import workdir as workdir_lib

PROBE_STATE = "linear_probe_state.npz"


def features_path(workdir, split: str):
  name = split.replace("[", "_").replace("]", "").replace(":", "_")
  return workdir_lib.resolve(os.fspath(workdir)) / f"features_{name}.npz"


def probe_path(workdir):
  return workdir_lib.resolve(os.fspath(workdir)) / PROBE_STATE


def encoder_key(config, loaded, data_cfg, **extra: Any) -> str:
  """The key of files computed from `loaded`'s encoder on `data_cfg`'s data (+ `extra` fields)."""
  return json.dumps(
    {
      "pretrained_workdir": loaded.workdir,
      "pretrained_step": loaded.step,
      "random_init": bool(loaded.random_init),
      "seed": int(config.seed),
      "dataset": data_cfg.dataset,
      "image_size": int(data_cfg.image_size),
      **extra,
    },
    sort_keys=True,
    default=str,
  )


def load(path, key: str) -> dict[str, np.ndarray] | None:
  """The arrays of `path` when it exists and was written under `key`; else None."""
  if not path.exists():
    return None
  with path.open("rb") as f, np.load(f, allow_pickle=False) as saved:
    if str(saved["key"]) != key:
      logging.warning("%s was made from another encoder, data or settings; redoing it.", path)
      return None
    return {k: saved[k] for k in saved.files if k != "key"}


def save(path, key: str, **arrays) -> None:
  """Writes `arrays` and `key` to `path` whole (the caller writes from process 0 only)."""
  buf = io.BytesIO()
  np.savez(buf, key=np.asarray(key), **arrays)
  workdir_lib.write_bytes(path, buf.getvalue())


def save_leaves(path, key: str, step: int, leaves: list) -> None:
  """The augmented probe's state (steps done, its array leaves) for `load_leaves`."""
  save(
    path, key, step=np.int64(step), **{f"leaf_{i:04d}": np.asarray(x) for i, x in enumerate(leaves)}
  )


def load_leaves(path, key: str) -> tuple[int, list] | None:
  """(steps done, leaves in order) saved by `save_leaves` under `key`, or None."""
  saved = load(path, key)
  if saved is None:
    return None
  names = sorted(k for k in saved if k.startswith("leaf_"))
  return int(saved["step"]), [saved[k] for k in names]
