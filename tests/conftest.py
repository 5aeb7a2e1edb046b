"""Test set-up: 8 fake CPU devices, set before anything imports jax or TensorFlow (TF imports jax)."""

import os
import shutil
import tempfile

# Not --xla_backend_optimization_level=0 (LLVM -O0): in a fresh-clone .ci/run it cut pytest's time
# by a fifth (33.8 -> 27.0 min) but two 8-devices == 1-device tests failed under it (supcon params
# off by 1.5e-4, simclr by 1e-6: its kernels round float32 sums differently), so it is not used.
os.environ["XLA_FLAGS"] = (
  os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
).strip()
# The trainer's convolution setting (contrastive_jax/cpu_convolutions.py, added by the command line
# too), so that in-process tests run the programs users run; subprocesses inherit it.
from contrastive_jax import cpu_convolutions  # noqa: E402  (imports no jax)

cpu_convolutions.configure()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
# As in contrastive_jax/main.py: no Keras import inside `import tensorflow` (~1.8 s per process).
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
# One persistent XLA compilation cache for the whole run: pytest-xdist workers and the subprocesses
# the end-to-end tests start inherit it, so the same tiny models compile once instead of in every
# process (compilation, not arithmetic, is most of this suite's time on 2 cores).
# Made only where unset: every xdist worker imports this file again and inherits the controller's.
_OWN_CACHE = None  # the cache this process made (removed at exit), not one a user pointed us at
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
  _OWN_CACHE = tempfile.mkdtemp(prefix="cjax-xla-cache-")
  os.environ["JAX_COMPILATION_CACHE_DIR"] = _OWN_CACHE
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.2")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")


def pytest_configure(config):
  config.addinivalue_line("markers", "slow: takes more than ~20 s; deselect with -m 'not slow'")


def pytest_unconfigure(config):
  # Only the process that made the cache removes it (the xdist controller, after its workers).
  if _OWN_CACHE and not hasattr(config, "workerinput"):
    shutil.rmtree(_OWN_CACHE, ignore_errors=True)
