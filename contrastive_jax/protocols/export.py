r"""mode=export: the encoder of a pre-training workdir W as framework-neutral files.

  python -m contrastive_jax.main --config=configs/simclr_cifar10.py --config.mode=export \
      --config.pretrained_workdir=W --workdir=W/export

Any method's config (or configs/linear_eval.py) serves: the model comes from W/config.json, this
config gives only export.batch_size and export.platforms. Written into --workdir (never into W):

  encoder.safetensors  the encoder's parameters and BatchNorm statistics, the subtrees at
                       method.encoder_path of params and batch_stats, flattened to names
                       'params/<module>/.../<leaf>' and 'batch_stats/...' (float32); the header's
                       metadata names the method, encoder_path, step and model.
  encoder.json         beside it: the pre-training config, method, encoder_path, step, tensor names
                       and shapes, the embed function's input and output.
  embed.jax_export     method.embed (features before the projection head) with the weights inside,
                       serialised by jax.export for a fixed input (export.batch_size, S, S, 3)
                       float32 in [0, 1] (the eval view already applied: resize + centre crop),
                       lowered for every platform of export.platforms.
  config.json, results.json.

Loading needs neither this package nor Flax:
  exp = jax.export.deserialize(open("embed.jax_export", "rb").read()); features = exp.call(images)
  tensors = safetensors.numpy.load_file("encoder.safetensors")
and `read_encoder` + `with_encoder` put the tensors back into a Flax state of this code.
"""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np

from contrastive_jax import metrics as metrics_lib, pretrained, sharding, validate
from contrastive_jax import workdir as workdir_lib
from contrastive_jax.methods import base
from contrastive_jax.state import TrainState

SAFETENSORS = "encoder.safetensors"
MANIFEST = "encoder.json"
EXPORTED = "embed.jax_export"
PLATFORMS = ("cpu", "cuda", "rocm", "tpu")
_SEP = "/"  # Flax module and leaf names never contain '/'


def flatten(tree, prefix: str) -> dict[str, np.ndarray]:
  """{'prefix/a/b/leaf': float32 array} of nested dicts of arrays (sorted keys)."""
  out = {}
  for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
    keys = [str(getattr(k, "key", getattr(k, "name", k))) for k in path]
    out[_SEP.join([prefix, *keys])] = np.ascontiguousarray(np.asarray(leaf, np.float32))
  return out


def unflatten(flat: dict[str, np.ndarray], prefix: str) -> dict:
  """The nested dict of the names under `prefix/` (the inverse of `flatten`)."""
  tree: dict = {}
  for name, value in flat.items():
    first, *keys = name.split(_SEP)
    if first != prefix or not keys:
      continue
    node = tree
    for key in keys[:-1]:
      node = node.setdefault(key, {})
    node[keys[-1]] = value
  return tree


def encoder_tensors(method: base.Method, state) -> dict[str, np.ndarray]:
  """The encoder's parameters and BN statistics of a (replicated) state, flattened, on the host."""
  params = base.encoder_subtree(method, state.params)
  stats = pretrained.subtree_at(state.batch_stats or {}, method.encoder_path) or {}
  params, stats = sharding.to_host((params, stats))
  return {**flatten(params, "params"), **flatten(stats, "batch_stats")}


def read_encoder(directory) -> dict:
  """{'params', 'batch_stats' (nested dicts of numpy), 'manifest' (encoder.json)} of an export."""
  from safetensors.numpy import load  # pylint: disable=g-import-not-at-top

  path = workdir_lib.resolve(os.fspath(directory))
  flat = load((path / SAFETENSORS).read_bytes())
  return {
    "params": unflatten(flat, "params"),
    "batch_stats": unflatten(flat, "batch_stats"),
    "manifest": json.loads((path / MANIFEST).read_text()),
  }


def _replace_at(tree: dict, path: tuple[str, ...], value) -> dict:
  if not path:
    return value
  out = dict(tree or {})
  out[path[0]] = _replace_at(out.get(path[0], {}), path[1:], value)
  return out


def with_encoder(method: base.Method, state, params, batch_stats):
  """`state` with its encoder (params and BN statistics at method.encoder_path) replaced."""
  stats = state.batch_stats
  if batch_stats:
    stats = _replace_at(stats, tuple(method.encoder_path), batch_stats)
  return state.replace(
    params=_replace_at(state.params, tuple(method.encoder_path), params), batch_stats=stats
  )


def export_embed(method: base.Method, state, input_shape, platforms) -> jax.export.Exported:
  """jax.export of images -> float32 method.embed(state, images), the host weights as constants."""
  host = sharding.to_host((state.params, state.batch_stats))
  frozen = TrainState(
    step=np.int32(0),
    params=host[0],
    batch_stats=host[1],
    opt_state={},
    extras={},
    rng=np.zeros((2,), np.uint32),
  )

  def embed(images):
    return method.embed(frozen, images).astype(jnp.float32)

  spec = jax.ShapeDtypeStruct(tuple(int(d) for d in input_shape), jnp.float32)
  return jax.export.export(jax.jit(embed), platforms=tuple(platforms))(spec)


def check(config, workdir: str) -> tuple[int, tuple[str, ...]]:
  """(batch size, platforms) of config.export; raises for a missing or unusable field."""
  validate.check(config)
  src = config.get("pretrained_workdir", None)
  if not src:
    raise ValueError(
      f"config.mode={config.mode!r} needs --config.pretrained_workdir=W (a pre-training workdir "
      f"with config.json and checkpoints/)."
    )
  same = workdir_lib.resolve(src, "config.pretrained_workdir") == workdir_lib.resolve(workdir)
  if same:
    raise ValueError(
      f"--workdir={workdir!r} is the pre-training workdir (config.pretrained_workdir): this mode "
      f"would write its config.json and results.json over the run's own. Use e.g. "
      f"--workdir={os.path.join(src, config.mode)}."
    )
  platforms = config.export.platforms
  platforms = (platforms,) if isinstance(platforms, str) else tuple(platforms)
  bad = [p for p in platforms if p not in PLATFORMS]
  if bad or not platforms:
    raise ValueError(
      f"config.export.platforms={platforms!r}: use some of {PLATFORMS}, e.g. "
      f"--config.export.platforms=\"('cpu','cuda')\"."
    )
  return int(config.export.batch_size), platforms


def run(config, workdir: str) -> dict:
  """Writes the export files of config.pretrained_workdir into `workdir`; returns results.json."""
  batch, platforms = check(config, workdir)
  loaded = pretrained.load(config.pretrained_workdir, mesh=sharding.make_mesh())
  cfg, method = loaded.config, loaded.method
  size = int(cfg.image_size)
  tensors = encoder_tensors(method, loaded.state)
  exported = export_embed(method, loaded.state, (batch, size, size, 3), platforms)
  out = workdir_lib.resolve(workdir)
  res = {
    "pretrained_workdir": loaded.workdir,
    "pretrained_step": loaded.step,
    "method": cfg.method,
    "model": cfg.model.name,
    "encoder_path": list(method.encoder_path),
    "export_files": [SAFETENSORS, MANIFEST, EXPORTED],
    "export_num_tensors": len(tensors),
    "export_num_parameters": int(sum(v.size for k, v in tensors.items() if k.startswith("params"))),
    "export_input_shape": [batch, size, size, 3],
    "export_feature_dim": int(exported.out_avals[0].shape[-1]),
    "export_platforms": list(exported.platforms),
  }
  if jax.process_index() != 0:
    return res
  from safetensors.numpy import save  # pylint: disable=g-import-not-at-top

  out.mkdir(parents=True, exist_ok=True)
  metrics_lib.write_json(out / "config.json", json.loads(config.to_json()))
  meta = {k: json.dumps(res[k]) for k in ("method", "model", "encoder_path", "pretrained_step")}
  (out / SAFETENSORS).write_bytes(save(tensors, metadata=meta))
  metrics_lib.write_json(
    out / MANIFEST,
    {
      **res,
      "config": json.loads(cfg.to_json()),
      "tensors": {k: list(v.shape) for k, v in tensors.items()},
      "embed_input": {
        "shape": [batch, size, size, 3],
        "dtype": "float32",
        "range": [0.0, 1.0],
        "layout": "NHWC, RGB, eval view applied (resize + centre crop)",
      },
      "embed_output": {"shape": list(exported.out_avals[0].shape), "dtype": "float32"},
      "load": "jax.export.deserialize(open('embed.jax_export','rb').read()).call(images)",
    },
  )
  (out / EXPORTED).write_bytes(bytes(exported.serialize()))
  print(f"Exported the {cfg.method} encoder (step {loaded.step}) to {os.fspath(out)}.", flush=True)
  return metrics_lib.update_results(out, res)
