"""Test set-up: 8 fake CPU devices, set before anything imports jax or TensorFlow (TF imports jax)."""

import os
import tempfile

# LLVM -O0 for the tests' generated CPU kernels: compilation, not arithmetic, dominates this suite,
# and skipping LLVM's machine-code optimisation cut the CPU time of a compile-bound test by 40%
# (tests/test_methods.py eight_devices_equal_one[byol]: 67 -> 41 s) and of a subprocess one by 15%.
# The HLO and XLA's own passes are unchanged; convolutions and matmuls are library calls either way.
# Training runs keep XLA's default (-O2/-O3). Subprocesses inherit these flags (subprocess_env).
_TEST_FLAGS = ("--xla_backend_optimization_level=0", "--xla_force_host_platform_device_count=8")
_flags = os.environ.get("XLA_FLAGS", "").split()
os.environ["XLA_FLAGS"] = " ".join(_flags + [f for f in _TEST_FLAGS if f not in _flags])
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
# One persistent XLA compilation cache for the whole run: pytest-xdist workers and the subprocesses
# the end-to-end tests start inherit it, so the same tiny models compile once instead of in every
# process (compilation, not arithmetic, is most of this suite's time on 2 cores).
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", tempfile.mkdtemp(prefix="cjax-xla-cache-"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.2")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")


def pytest_configure(config):
  config.addinivalue_line("markers", "slow: takes more than ~20 s; deselect with -m 'not slow'")
