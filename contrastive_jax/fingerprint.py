"""What a checkpoint cannot be resumed across: the config fingerprint, and the resume check.

A resumed run promises the parameters of an uninterrupted one, so the fingerprint holds everything
that shapes the parameters or the training stream: method, model, head, method_args, batch size,
seed, and the data stream itself (dataset and its TFDS version, a folder's class list and file
count (not its location), train_split, number of training examples and of classes, image size, the
reader (in memory or streaming), the shuffle buffer of the streaming reader (the in-memory reader
shuffles exactly and never reads it), and both views' augmentation configs).

A field the checkpoint's fingerprint lacks (added to the code since it was written, at a default
that keeps the old behaviour) is not a difference; it is reported, and the checkpoint's array shapes
are still compared with the config's (checkpoint.py).

Everything else may change on resume and is reported: SAFE fields (logging, checkpoint and eval
intervals, total_steps, kNN settings, data_dir, ...) do not change what is trained; other changes
(an optimiser setting, say) continue the run but are reported as making it differ from an
uninterrupted one.
"""

import json
import logging
from typing import Any

from contrastive_jax.checkpoint import IncompatibleCheckpointError
from contrastive_jax.data import catalog, folder, image_text

# Fields (or field prefixes) whose change does not alter the trained parameters or the stream.
SAFE = (
  "log_every_steps",
  "checkpoint_every_steps",
  "keep_checkpoints",
  "eval_every_epochs",
  "eval_at_start",
  "eval_split",
  "total_steps",
  "total_epochs",
  "knn.",
  "zero_shot.",
  "nan_policy",
  "max_skipped_steps",
  "data_dir",
  "dataset",  # only reaches the report when the data identity matched: a folder that moved
  "profile_",  # a profiler trace, or another mode's fields: nothing the training reads
  "pretrained_workdir",
  "export.",
  "embed.",
)


def data_stream(config, train_size: int, num_classes: int) -> dict:
  """The data-stream part of the fingerprint (see the module docstring)."""
  if image_text.enabled(config):  # (image, caption) runs: their stream, with the text fields
    return image_text.stream_fingerprint(config, train_size, num_classes)
  dataset = config.dataset
  reader = catalog.reader(config)
  return {
    "dataset": folder.PREFIX if folder.is_folder(dataset) else dataset,
    "tfds_version": catalog.version(config),
    "folder": folder.identity(dataset, config.train_split) if folder.is_folder(dataset) else None,
    "train_split": config.train_split,
    "train_examples": int(train_size),
    "num_classes": int(num_classes),
    "image_size": config.image_size,
    "reader": reader,
    "shuffle_buffer": config.shuffle_buffer if reader == "streaming" else None,
    "aug": config.aug.to_dict(),
    "aug2": config.aug2.to_dict() if config.get("aug2") is not None else None,
  }


def fingerprint(config, data=None) -> dict:
  """The fields a checkpoint cannot be resumed across, JSON-normalised.

  Args:
    config: the run's ConfigDict.
    data: its data.source.DataSource (train_size, num_classes); None leaves the stream out (for
      callers without data, e.g. tests of the config part).
  """
  out = {
    "method": config.method,
    "model": config.model.to_dict(),
    "head": config.head.to_dict(),
    "batch_size": config.batch_size,
    "dataset": config.dataset if not folder.is_folder(config.dataset) else folder.PREFIX,
    "seed": config.seed,
    "image_size": config.image_size,
    "method_args": config.method_args.to_dict(),
  }
  if data is not None:
    out["data"] = data_stream(config, data.train_size, data.num_classes)
  return json.loads(json.dumps(out))


def check_resume(saved: dict, config, total_steps: int, data=None) -> None:
  """Raises IncompatibleCheckpointError naming every differing field; reports allowed changes."""
  now_tree, old_tree = fingerprint(config, data), saved.get("fingerprint", {})
  differing, added = [], []
  for k in now_tree:
    if k in old_tree:
      _compare(old_tree[k], now_tree[k], k, differing, added)
  data_diffs = [k for k in differing if k.startswith("data")]
  diffs = [
    f"{k}: checkpoint has {_at(old_tree, k)!r}, config has {_at(now_tree, k)!r}" for k in data_diffs
  ]
  for top in dict.fromkeys(k.split(".")[0] for k in differing if k not in data_diffs):
    diffs.append(f"{top}: checkpoint has {old_tree[top]!r}, config has {now_tree[top]!r}")
  if added:
    logging.warning(
      "The checkpoint's fingerprint predates these fields; resuming with their values: %s.",
      "; ".join(f"{k}={_at(now_tree, k)!r}" for k in added),
    )
  if diffs:
    raise IncompatibleCheckpointError(
      "The checkpoint in this workdir was written by a different configuration:\n  "
      + "\n  ".join(diffs)
      + "\nNothing on disk was changed. Use a new --workdir for the new configuration, or restore "
      "the old values."
    )
  if saved.get("total_steps") not in (None, total_steps):
    logging.warning(
      "Resuming with total_steps %s (checkpoint was made with %s): the LR schedule "
      "is stretched from here on.",
      total_steps,
      saved.get("total_steps"),
    )
  changed = _changed_fields(saved.get("config", {}), json.loads(config.to_json()))
  safe = [c for c in changed if c[0].startswith(SAFE)]
  other = [c for c in changed if not c[0].startswith(SAFE)]
  if safe:
    logging.warning(
      "Resuming with changed settings (safe to change; the run continues): %s.", _fmt(safe)
    )
  if other:
    logging.warning(
      "Resuming with changed training settings: %s. The run continues, but from here on it "
      "differs from an uninterrupted run of either configuration.",
      _fmt(other),
    )


def _compare(old, new, path: str, differing: list, added: list) -> None:
  """Collects the paths where `new` differs from `old`; keys `old` lacks (a config field added to
  the code since the checkpoint, at a default that keeps the old behaviour) go to `added`, and the
  array-shape check still guards what they change."""
  if isinstance(old, dict) and isinstance(new, dict):
    for k in new:
      if k in old:
        _compare(old[k], new[k], f"{path}.{k}", differing, added)
      else:
        added.append(f"{path}.{k}")
  elif old != new:
    differing.append(path)


def _at(tree: dict, path: str):
  for k in path.split("."):
    tree = tree[k]
  return tree


def _fmt(changes) -> str:
  return "; ".join(f"{k}: {a!r} -> {b!r}" for k, a, b in changes)


def _changed_fields(old: dict, new: dict, prefix: str = "") -> list[tuple[str, Any, Any]]:
  out = []
  for k in sorted(set(old) | set(new)):
    a, b = old.get(k), new.get(k)
    if isinstance(a, dict) and isinstance(b, dict):
      out += _changed_fields(a, b, f"{prefix}{k}.")
    elif a != b:
      out.append((f"{prefix}{k}", a, b))
  return out
