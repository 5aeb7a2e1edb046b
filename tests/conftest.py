"""Test set-up: 8 fake CPU devices, set before anything imports jax or TensorFlow (TF imports jax)."""

import os

os.environ["XLA_FLAGS"] = (
  os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")


def pytest_configure(config):
  config.addinivalue_line("markers", "slow: takes more than ~20 s; deselect with -m 'not slow'")
