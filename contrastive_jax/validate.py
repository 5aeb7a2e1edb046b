"""Config validation before any data is read or anything compiles: every bad value in one error.

`check(config)` walks the whole ConfigDict and applies rules by field name, so pre-training,
linear-evaluation and fine-tuning configs are covered alike:
- intervals: every `*_every_steps` > 0; every `*_every_epochs` >= 0 (0: only at the end);
- `keep_checkpoints` >= 1; sizes and counts (`batch_size`, `image_size`, `shuffle_buffer`,
  `knn.k`, ...) >= 1;
- learning rates (`base_lr`, `lr`, `*_lr`, `lrs`) >= 0; temperatures (`temperature`,
  `temperatures`) > 0; probabilities (`*_prob`) in [0, 1]; crop areas (`crop_area_min/max`) in
  (0, 1] with min <= max; weight decays, warmup, clipping >= 0; momenta and Adam betas in [0, 1);
- every enum field against its choices (mode, method, model name/stem/norm/dtype/pool/posemb,
  optimiser name and LR scaling rule, nan_policy, resize method, triplet mining, SigLIP's
  sigmoid_loss, the caption source, tokenizer and prompt templates), read from the modules that use
  them (the data ones, which import TensorFlow, are mirrored here; tests keep them equal).
Each problem names the field, the value and a valid example. This module sits above the leaves it
reads choices from (methods, models, optim) and below the loop.
"""

import functools
import json
import math
import os
from typing import Any

from contrastive_jax import methods, optim
from contrastive_jax.methods import siglip
from contrastive_jax.models import resnet, vit

MODES = ("pretrain", "linear_eval", "finetune", "sweep", "export", "embed")
NAN_POLICIES = ("stop", "skip")
DTYPES = ("float32", "bfloat16")
RESIZE_METHODS = (
  "bicubic",
  "bilinear",
  "nearest",
  "area",
  "lanczos3",
  "lanczos5",
  "gaussian",
  "mitchellcubic",
)
MINING = ("hard", "semi_hard")
# data/image_text.SOURCES (+ '' for image-only runs) and data/tokenizer.TOKENIZERS: those modules
# import TensorFlow, which validation must not need (tests/test_config_validation.py compares).
TEXT_SOURCES = ("", "templates", "tfds", "folder", "synthetic")
TOKENIZERS = ("clip_bpe",)
_PROMPTS = os.path.join(os.path.dirname(__file__), "data", "assets", "clip_prompts.json")


@functools.lru_cache(maxsize=1)
def template_names() -> tuple[str, ...]:
  """The named prompt-template sets (data/captions.py reads the same file)."""
  with open(_PROMPTS, encoding="utf-8") as f:
    return tuple(sorted(json.load(f)["templates"]))


_LRS = {"base_lr", "lr", "lrs", "end_lr_factor", "head_lr", "backbone_lr"}
_NONNEG = {
  "weight_decay",
  "weight_decays",
  "warmup_epochs",
  "grad_clip_norm",
  "max_skipped_steps",
  "label_smoothing",
  "profile_start_step",
  "profile_num_steps",
}
_POSITIVE_INT = {"batch_size", "image_size", "shuffle_buffer", "k", "ks"}
_UNIT_OPEN = {"momentum", "b1", "b2"}


class ConfigError(ValueError):
  """One or more config fields hold values the run cannot use."""


def _fmt(path: str) -> str:
  return f"config.{path}"


def _numbers(value) -> list:
  if isinstance(value, (list, tuple)):
    return list(value)
  return [value]


def _is_number(v) -> bool:
  return isinstance(v, (int, float)) and not isinstance(v, bool)


def _walk(tree, prefix=""):
  for key in sorted(tree.keys()):
    value = tree[key]
    path = f"{prefix}{key}"
    if hasattr(value, "keys") and hasattr(value, "items"):
      yield from _walk(value, path + ".")
    else:
      yield path, key, value


def _rule(path: str, key: str, value: Any) -> str | None:
  """The problem with one numeric field, or None."""
  vals = [v for v in _numbers(value) if v is not None]
  if not vals or not all(_is_number(v) for v in vals):
    return None
  bad = next((v for v in vals if isinstance(v, float) and math.isnan(v)), None)
  if bad is not None:
    return f"{_fmt(path)}=nan: must be a number"

  def first(pred):
    return next((v for v in vals if not pred(v)), None)

  checks = []
  if key.endswith("_every_steps"):
    checks.append((lambda v: v > 0, "must be > 0", "50"))
  elif key.endswith("_every_epochs"):
    checks.append((lambda v: v >= 0, "must be >= 0 (0: only at the end)", "10.0"))
  elif key == "keep_checkpoints":
    checks.append((lambda v: v >= 1, "must be >= 1 (0 would keep every checkpoint)", "3"))
  elif key in _LRS or key.endswith("_lr"):
    checks.append((lambda v: v >= 0, "a learning rate must be >= 0", "0.3"))
  elif key in ("temperature", "temperatures"):
    checks.append((lambda v: v > 0, "a temperature must be > 0", "0.1"))
  elif key.endswith("_prob") or key.endswith("_fraction"):
    checks.append((lambda v: 0 <= v <= 1, "a probability / fraction must be in [0, 1]", "0.5"))
  elif key in ("crop_area_min", "crop_area_max"):
    checks.append(
      (lambda v: 0 < v <= 1, "a crop area (fraction of the image) must be in (0, 1]", "0.08")
    )
  elif key in _NONNEG:
    checks.append((lambda v: v >= 0, "must be >= 0", "0.0"))
  elif key in _POSITIVE_INT:
    checks.append((lambda v: v >= 1, "must be >= 1", "256"))
  elif key in _UNIT_OPEN:
    checks.append((lambda v: 0 <= v < 1, "must be in [0, 1)", "0.9"))
  for pred, why, example in checks:
    v = first(pred)
    if v is not None:
      shown = value if isinstance(value, (list, tuple)) else v
      return f"{_fmt(path)}={shown!r}: {why}; e.g. --{_fmt(path)}={example}"
  return None


def _get(config, path: str) -> Any:
  """config's value at the dotted path; None where the path does not exist."""
  node = config
  for part in path.split("."):
    if not hasattr(node, "keys") or part not in node.keys():
      return None
    node = node[part]
  return node


def _enum(config, path: str, choices, problems: list) -> None:
  node = _get(config, path)
  if node is None:
    return
  if node not in choices:
    problems.append(
      f"{_fmt(path)}={node!r}: not one of {list(choices)}; e.g. --{_fmt(path)}={choices[0]}"
    )


def _model_names() -> list[str]:
  return [*resnet.available_encoders(), "vit_<size><patch> (e.g. vit_s16)"]


def problems(config) -> list[str]:
  """Every problem of `config`, one line each (empty when it is valid)."""
  out = []
  for path, key, value in _walk(config):
    p = _rule(path, key, value)
    if p:
      out.append(p)
  for prefix in ("aug.", "aug2."):
    node = config.get(prefix[:-1]) if hasattr(config, "get") else None
    if node is not None and hasattr(node, "get"):
      lo, hi = node.get("crop_area_min"), node.get("crop_area_max")
      if _is_number(lo) and _is_number(hi) and 0 < lo <= 1 and 0 < hi <= 1 and lo > hi:
        out.append(
          f"config.{prefix}crop_area_min={lo!r} > config.{prefix}crop_area_max={hi!r}: the "
          f"smallest crop must not exceed the largest; e.g. --config.{prefix}crop_area_min=0.08"
        )
      _enum(config, f"{prefix}resize_method", RESIZE_METHODS, out)
  _enum(config, "mode", MODES, out)
  _enum(config, "method", tuple(methods.available()), out)
  _enum(config, "nan_policy", NAN_POLICIES, out)
  _enum(config, "optim.name", optim.OPTIMIZERS, out)
  _enum(config, "optim.lr_scaling", optim.LR_RULES, out)
  _enum(config, "model.stem", resnet.STEMS, out)
  _enum(config, "model.norm", resnet.NORMS, out)
  _enum(config, "model.dtype", DTYPES, out)
  _enum(config, "model.pool", vit.POOLS, out)
  _enum(config, "model.posemb", vit.POSEMBS, out)
  _enum(config, "method_args.mining", MINING, out)
  _enum(config, "method_args.sigmoid_loss", siglip.SIGMOID_LOSSES, out)
  _enum(config, "text.source", TEXT_SOURCES, out)
  _enum(config, "text.tokenizer", TOKENIZERS, out)
  for path in ("text.templates", "zero_shot.templates"):  # a name, or a list of '{}' strings
    if isinstance(_get(config, path), str):
      _enum(config, path, template_names(), out)
  name = config.get("model", {}).get("name") if hasattr(config, "get") else None
  if isinstance(name, str) and not (vit.is_vit(name) or name in resnet.available_encoders()):
    out.append(
      f"config.model.name={name!r}: not a model here; choose one of {_model_names()}; e.g. "
      f"--config.model.name=resnet18"
    )
  return out


def check(config) -> None:
  """Raises ConfigError listing every problem of `config` (see the module docstring)."""
  found = problems(config)
  if found:
    raise ConfigError(f"{len(found)} config value(s) cannot be used:\n  " + "\n  ".join(found))
