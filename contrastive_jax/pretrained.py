"""Loads the encoder of a pre-training workdir (or a random init of the same architecture) for evaluation.

A pre-training workdir W holds W/config.json (the config it was started with) and
W/checkpoints/<step>/ (orbax: the whole TrainState). Evaluation needs only `params` and
`batch_stats`; they are restored from the newest checkpoint that loads (read-only, see below),
replicated over the mesh.

The abstract TrainState is the one step.create_state builds for pre-training (method.init + the
pre-training optimiser, under eval_shape) so the restore is a plain StandardRestore. If the
optimiser state of the checkpoint has another structure (e.g. a later optimiser option), the restore
falls back to the checkpoint's own tree metadata.

Evaluation never writes to W: the checkpoints are opened with a read-only orbax CheckpointManager
(no clean-up of temporary directories, no setting aside of unreadable steps, as
checkpoint.Checkpointer does for the trainer that owns the directory), so evaluating a run while it
is still training cannot disturb its saves. A step that does not load is skipped, the next older one
is tried.
"""

import dataclasses
import json
import logging
import os
import types
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from contrastive_jax import methods, optim, sharding
from contrastive_jax import workdir as workdir_lib
from contrastive_jax import step as step_lib
from contrastive_jax.data import catalog, image_text
from contrastive_jax.methods import base
from contrastive_jax.state import TrainState


@dataclasses.dataclass
class Pretrained:
  """A frozen encoder ready for method.embed.

  Attributes:
    config: the pre-training ConfigDict (from W/config.json).
    method: the Method built from it (embed(state, images) -> features before the projection head).
    state: a TrainState whose params / batch_stats are the restored (or random) ones; opt_state is
      empty.
    step: the checkpoint step (0 for a random init).
    random_init: True when the weights are a random initialisation.
    workdir: the pre-training workdir.
  """

  config: ml_collections.ConfigDict
  method: Any
  state: TrainState
  step: int
  random_init: bool
  workdir: str

  @property
  def params(self):
    return self.state.params

  @property
  def batch_stats(self):
    return self.state.batch_stats


def load_config(workdir: str) -> ml_collections.ConfigDict:
  """The pre-training config of `workdir` (W/config.json), unlocked."""
  path = workdir_lib.resolve(workdir, "config.pretrained_workdir") / "config.json"
  if not path.exists():
    raise ValueError(
      f"{path} does not exist: config.pretrained_workdir={workdir!r} is not a pre-training workdir "
      f"(it is written at the start of `python -m contrastive_jax.main --config=configs/<method>.py "
      f"--workdir=W`). Point --config.pretrained_workdir at such a W."
    )
  cfg = ml_collections.ConfigDict(json.loads(path.read_text()))
  # JSON turns tuples into lists; the model builders take any sequence.
  return cfg


class ReadOnlyCheckpoints:
  """The checkpoints of W/checkpoints, opened for reading only (same layout as checkpoint.Checkpointer)."""

  def __init__(self, directory: str):
    import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top

    self._ocp = ocp
    self.directory = workdir_lib.resolve(directory, "config.pretrained_workdir")
    options = ocp.CheckpointManagerOptions(
      read_only=True, create=False, cleanup_tmp_directories=False, enable_async_checkpointing=False
    )
    self._mgr = ocp.CheckpointManager(self.directory, options=options, item_names=("state", "meta"))

  def all_steps(self) -> list[int]:
    return sorted(self._mgr.all_steps())

  def restore(self, step: int, abstract_state: Any) -> Any:
    ocp = self._ocp
    return self._mgr.restore(
      step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract_state))
    )["state"]

  def restore_raw(self, step: int, mesh) -> dict:
    """The state tree of `step` as saved (nested dicts), from the checkpoint's own metadata, replicated."""
    meta = self._mgr.item_metadata(step)["state"]
    tree = getattr(meta, "tree", meta)
    rep = sharding.replicated(mesh)
    abstract = jax.tree.map(
      lambda m: jax.ShapeDtypeStruct(tuple(m.shape), m.dtype, sharding=rep),
      tree,
      is_leaf=lambda x: hasattr(x, "shape") and hasattr(x, "dtype"),
    )
    return self.restore(step, abstract)

  def close(self) -> None:
    self._mgr.close()


def load(
  workdir: str,
  *,
  mesh=None,
  num_classes: int | None = None,
  random_init: bool = False,
  seed: int = 0,
) -> Pretrained:
  """Builds the pre-training method of `workdir` and restores its latest good checkpoint.

  Args:
    workdir: pre-training workdir (holds config.json and checkpoints/).
    mesh: device mesh (default sharding.make_mesh()); the weights are replicated over it.
    num_classes: classes of the online probe the pre-training net was built with (default: from the
      dataset of the pre-training config; only the parameter tree shape depends on it).
    random_init: skip the checkpoint and initialise the same architecture randomly (baselines).
    seed: PRNG seed of the random init.

  Returns:
    Pretrained.

  Raises:
    ValueError: no config.json, or no checkpoint that loads (and random_init is False).
  """
  workdir = os.fspath(workdir_lib.resolve(workdir, "config.pretrained_workdir"))  # local or gs://
  cfg = load_config(workdir)
  mesh = mesh or sharding.make_mesh()
  if num_classes is None and image_text.enabled(cfg):
    num_classes = 0  # image-text methods (CLIP, SigLIP) build no online probe
  if num_classes is None:
    num_classes = catalog.dataset_info(
      cfg.dataset, catalog.resolve_data_dir(cfg.get("data_dir")), config=cfg
    )[0]
  method = methods.get_method(cfg, num_classes)
  image_shape = (int(cfg.image_size), int(cfg.image_size), 3)
  tx, _ = optim.create_optimizer(
    cfg.optim, batch_size=int(cfg.batch_size), total_steps=1000, steps_per_epoch=10
  )
  seeded = types.SimpleNamespace(seed=seed)  # create_state reads only config.seed

  def create():
    return step_lib.create_state(method, tx, seeded, mesh, image_shape)

  rep = sharding.replicated(mesh)
  abstract = jax.tree.map(
    lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=rep), jax.eval_shape(create)
  )

  if random_init:
    state = create()
    logging.info("Random init of the %s encoder (%s), seed %d.", cfg.method, cfg.model.name, seed)
    return Pretrained(cfg, method, _frozen(state), 0, True, workdir)

  ckpt_dir = workdir_lib.resolve(workdir) / "checkpoints"
  if not ckpt_dir.is_dir():
    raise ValueError(
      f"No checkpoints in {ckpt_dir}: the pre-training run has not saved yet. Set "
      f"--config.random_init=True for a random-init baseline."
    )
  ckpt = ReadOnlyCheckpoints(ckpt_dir)
  try:
    step, state = _restore_newest(ckpt, mesh, abstract)
  finally:
    ckpt.close()
  logging.info("Restored %s encoder from %s (step %d).", cfg.method, ckpt_dir, step)
  return Pretrained(cfg, method, _frozen(state), int(step), False, workdir)


def _restore_newest(
  ckpt: ReadOnlyCheckpoints, mesh, abstract: TrainState
) -> tuple[int, TrainState]:
  """(step, state) of the newest checkpoint that loads: first as the abstract TrainState, else (an optimiser
  state of another structure) params/batch_stats through the checkpoint's own metadata."""
  errors = []
  steps = ckpt.all_steps()
  if not steps:
    raise ValueError(
      f"No complete checkpoint in {ckpt.directory} yet. Set --config.random_init=True for a "
      f"random-init baseline."
    )
  for step in reversed(steps):
    try:
      return step, ckpt.restore(step, abstract)
    except Exception as e:  # pylint: disable=broad-except
      first = f"{type(e).__name__}: {str(e)[:200]}"
    try:
      raw = ckpt.restore_raw(step, mesh)
      params, stats = raw["params"], raw.get("batch_stats", {}) or {}
      want = (jax.tree.structure(abstract.params), jax.tree.structure(abstract.batch_stats))
      if (jax.tree.structure(params), jax.tree.structure(stats)) != want:
        raise ValueError("params/batch_stats tree differs from the model built from config.json")
      logging.info(
        "Restored step %d through its metadata (the optimiser state differs: %s).", step, first
      )
      return step, TrainState(
        step=jnp.asarray(step, jnp.int32),
        params=params,
        batch_stats=stats,
        opt_state={},
        extras={},
        rng=jnp.zeros((2,), jnp.uint32),
      )
    except Exception as e:  # pylint: disable=broad-except
      errors.append(f"step {step}: {first}; from metadata: {type(e).__name__}: {str(e)[:200]}")
      logging.warning(
        "Checkpoint step %d of %s did not load; trying an older one.", step, ckpt.directory
      )
  raise ValueError(
    f"No checkpoint in {ckpt.directory} could be restored:\n  "
    + "\n  ".join(errors)
    + "\nSet --config.random_init=True for a random-init baseline."
  )


def _frozen(state: TrainState) -> TrainState:
  """The state evaluation uses: no optimiser state, no method extras."""
  rng = state.rng if isinstance(state.rng, jax.Array) else jnp.zeros((2,), jnp.uint32)
  return TrainState(
    step=state.step,
    params=state.params,
    batch_stats=state.batch_stats,
    opt_state={},
    extras={},
    rng=rng,
  )


def subtree_at(tree, path: tuple[str, ...]):
  """The entry of nested dicts at `path`, or None when some key on the way is missing."""
  for key in path:
    if not isinstance(tree, dict) or key not in tree:
      return None
    tree = tree[key]
  return tree


def encoder_fingerprint(method: base.Method, state: TrainState) -> np.ndarray:
  """Host copies of every encoder parameter and BN statistic (at method.encoder_path), concatenated:
  to check that an encoder stayed frozen, or changed."""
  params = base.encoder_subtree(method, state.params)
  stats = subtree_at(state.batch_stats or {}, method.encoder_path) or {}
  leaves = jax.tree.leaves((params, stats))
  return np.concatenate([np.asarray(sharding.to_host(x), np.float64).ravel() for x in leaves])
