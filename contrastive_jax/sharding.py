"""Mesh creation, global arrays from per-process host batches, multi-host helpers."""

import os
from typing import Any
from collections.abc import Mapping

import jax
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

from contrastive_jax import cpu_devices

DATA_AXIS = "data"


def make_mesh() -> jax.sharding.Mesh:
  """A 1-D mesh over every device of every process, axis 'data'."""
  return jax.make_mesh((jax.device_count(),), (DATA_AXIS,))


def replicated(mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def data_sharded(mesh) -> NamedSharding:
  return NamedSharding(mesh, P(DATA_AXIS))


def check_batch_size(batch_size: int, field: str = "config.batch_size") -> None:
  """Fails early, naming the field, when the global batch does not divide over devices and processes."""
  n_dev, n_proc = jax.device_count(), jax.process_count()
  if batch_size <= 0 or batch_size % n_dev:
    hint = ""
    if jax.devices()[0].platform == "cpu" and n_dev > 1:
      hint = f" (or, on CPU, fewer devices: {cpu_devices.ENV}=1 ./run.sh ...)"
    raise ValueError(
      f"{field}={batch_size} must be a positive multiple of the number of devices ({n_dev}); "
      f"set {field} to e.g. {max(n_dev, (max(batch_size, 1) // n_dev) * n_dev)}{hint}."
    )
  if batch_size % n_proc:
    raise ValueError(f"{field}={batch_size} must divide over the {n_proc} processes.")


def global_batch(host_batch: Mapping[str, np.ndarray], mesh) -> dict[str, jax.Array]:
  """Turns this process's rows into global jax.Arrays sharded along 'data'."""
  sharding = data_sharded(mesh)
  return {
    k: jax.make_array_from_process_local_data(sharding, np.asarray(v))
    for k, v in host_batch.items()
  }


def to_host(x: Any) -> Any:
  """Fetches (possibly multi-host, replicated) arrays to numpy on every process."""

  def fetch(a):
    if isinstance(a, jax.Array) and not a.is_fully_addressable:
      from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top

      return np.asarray(multihost_utils.process_allgather(a, tiled=True))
    return np.asarray(a)

  return jax.tree.map(fetch, x)


def maybe_initialize_distributed() -> None:
  """Calls jax.distributed.initialize when launched on several hosts.

  On Cloud TPU pods everything is auto-detected. On GPU clusters set
  JAX_COORDINATOR_ADDRESS (host:port), JAX_NUM_PROCESSES and JAX_PROCESS_ID (or run
  under SLURM / Open MPI, which JAX detects). Single-host runs skip it.
  """
  env = os.environ
  if env.get("JAX_COORDINATOR_ADDRESS"):
    kwargs = dict(
      coordinator_address=env["JAX_COORDINATOR_ADDRESS"],
      num_processes=int(env["JAX_NUM_PROCESSES"]),
      process_id=int(env["JAX_PROCESS_ID"]),
    )
    if env.get("JAX_LOCAL_DEVICE_IDS"):
      kwargs["local_device_ids"] = [int(i) for i in env["JAX_LOCAL_DEVICE_IDS"].split(",")]
    jax.distributed.initialize(**kwargs)
  elif (
    env.get("TPU_WORKER_HOSTNAMES")
    or env.get("SLURM_NTASKS", "1") != "1"
    or env.get("OMPI_COMM_WORLD_SIZE", "1") != "1"
  ):
    jax.distributed.initialize()
