"""How many JAX devices a CPU run splits the host into (environment variable CONTRASTIVE_JAX_CPU_DEVICES).

XLA:CPU runs a device's program one op after another, each op on a thread pool, and not every op
spreads over the cores: on this project's 2-core machine one device kept 1.64 cores busy (two: 1.93). Splitting the host into several CPU devices makes
the step data-parallel over the cores (the same global NT-Xent and synchronised batch norm, so the
same maths): resnet_tiny, batch 256, 32 px went from 170 to 264 images/s with 2 devices (4: 269),
ResNet-18 at batch 128 from 10.1 to 16.0 (README "Performance"). So the command line
(`contrastive_jax.main`, hence ./run.sh) asks XLA for that many host devices before jax starts.

Only the host (CPU) platform is affected: on a GPU or TPU machine jax still trains on the
accelerators, and the CPU devices are unused. An explicit --xla_force_host_platform_device_count
in XLA_FLAGS always wins (the tests set 8).
"""

import os
import re

ENV = "CONTRASTIVE_JAX_CPU_DEVICES"
FLAG = "--xla_force_host_platform_device_count"
# Measured up to 4 devices on 2 cores (no gain past the core count); never more than 8 by default.
MAX_AUTO = 8


def usable_cores() -> int:
  try:
    return len(os.sched_getaffinity(0))
  except AttributeError:  # macOS has no sched_getaffinity
    return os.cpu_count() or 1


def default_count(cores: int) -> int:
  """The largest power of two <= min(cores, 8): a power of two divides every preset's batch."""
  n = 1
  while n * 2 <= min(cores, MAX_AUTO):
    n *= 2
  return n


def requested(environ=None) -> int | None:
  """CONTRASTIVE_JAX_CPU_DEVICES as a positive int, or None when unset or empty."""
  environ = os.environ if environ is None else environ
  value = environ.get(ENV, "").strip()
  if not value:
    return None
  if not value.isdigit() or int(value) < 1:
    cores = usable_cores()
    raise ValueError(
      f"{ENV}={value!r} must be a positive integer (the number of CPU devices to split this host "
      f"into, e.g. {ENV}=1 for one device, or unset it for the default of "
      f"{default_count(cores)} on this machine's {cores} cores)."
    )
  return int(value)


def configure(environ=None) -> int | None:
  """Adds FLAG=N to XLA_FLAGS (N: CONTRASTIVE_JAX_CPU_DEVICES, else default_count of the cores).

  Returns N, or None when XLA_FLAGS already names a count (then it is left alone). Must run before
  jax creates its CPU backend (the first jax.devices() or computation), e.g. at the top of main.
  """
  environ = os.environ if environ is None else environ
  n = requested(environ)
  flags = environ.get("XLA_FLAGS", "")
  named = re.search(FLAG + r"=(\d+)", flags)
  if named:
    if n is not None and n != int(named.group(1)):
      raise ValueError(f"{ENV}={n} contradicts XLA_FLAGS' {named.group(0)}: set only one of them.")
    return None
  if n is None:
    n = default_count(usable_cores())
  environ["XLA_FLAGS"] = f"{flags} {FLAG}={n}".strip()
  return n
