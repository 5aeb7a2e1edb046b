"""contrastive_jax/cpu_convolutions.py: weight-gradient convolutions stay off YNNPACK on CPU."""

import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from contrastive_jax import cpu_convolutions as cc

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DN = ("NHWC", "HWIO", "NHWC")


def _conv(x, w):
  return jax.lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=DN)


@pytest.mark.parametrize(
  "version,expected",
  [("0.10.2", True), ("0.12.0.1", True), ("0.10.1", False), ("0.13.0", False), ("garbage", False)],
)
def test_only_verified_jaxlib_versions(version, expected):
  assert cc.applies(version) is expected
  assert cc.applies(None) is False


def test_configure_adds_the_flag_once_and_an_explicit_option_wins():
  env = {"XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
  assert cc.configure(env) is cc.applies(_jaxlib())
  if cc.applies(_jaxlib()):
    assert env["XLA_FLAGS"] == f"--xla_force_host_platform_device_count=2 {cc.FLAG}"
    assert cc.configure(env) is False and env["XLA_FLAGS"].count(cc.OPTION) == 1
  own = {"XLA_FLAGS": f"{cc.OPTION}=individual_convolution"}
  assert cc.configure(own) is False
  assert own["XLA_FLAGS"] == f"{cc.OPTION}=individual_convolution"


def _jaxlib():
  from importlib import metadata  # pylint: disable=g-import-not-at-top

  return metadata.version("jaxlib")


def test_the_command_line_sets_it_before_jax_starts():
  env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
  code = "import os, sys, contrastive_jax.main; print(os.environ['XLA_FLAGS']); print('jax' in sys.modules)"
  out = subprocess.run(
    [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, check=True
  ).stdout.split("\n")
  assert (cc.FLAG in out[0]) is cc.applies(_jaxlib()), out
  assert "--xla_force_host_platform_device_count=" in out[0], out


_PROBE = """
import jax, jax.numpy as jnp
DN = ("NHWC", "HWIO", "NHWC")
f = lambda w, x, g: jnp.sum(jax.lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=DN) * g)
x = jnp.zeros((8, 16, 16, 32)); w = jnp.zeros((3, 3, 32, 32))
print("__ynn_fusion" in jax.jit(jax.grad(f)).lower(w, x, x).compile().as_text())
"""


@pytest.mark.skipif(not cc.applies(_jaxlib()), reason="jaxlib outside the verified versions")
def test_the_weight_gradient_compiles_off_ynnpack_and_equals_the_default():
  """With the flag the compiled weight gradient has no YNNPACK fusion; with jaxlib's default (the
  option set to its default list explicitly) it has one, so the flag is what changes it. Both give
  the same gradient."""
  flags = {True: cc.FLAG, False: f"{cc.OPTION}=individual_convolution"}
  seen = {}
  for ours, flag in flags.items():
    env = dict(os.environ, XLA_FLAGS=flag, JAX_PLATFORMS="cpu")
    out = subprocess.run(
      [sys.executable, "-c", _PROBE], cwd=REPO, env=env, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr[-2000:]
    seen[ours] = out.stdout.strip()
  assert seen == {True: "False", False: "True"}, seen
  # In this process (conftest applied the flag): the gradient equals float64 NumPy's.
  rng = np.random.default_rng(0)
  x, g = rng.normal(size=(2, 2, 8, 8, 24))
  w = rng.normal(size=(3, 3, 24, 20)) / 15
  g = g[..., :20]
  dw = jax.jit(jax.grad(lambda w: jnp.sum(_conv(jnp.float32(x), w) * jnp.float32(g))))(
    jnp.float32(w)
  )
  xp = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
  ref = np.stack(
    [
      np.stack([np.einsum("nhwc,nhwd->cd", xp[:, i : i + 8, j : j + 8], g) for j in range(3)])
      for i in range(3)
    ]
  )
  np.testing.assert_allclose(np.asarray(dw), ref, rtol=1e-5, atol=1e-4 * np.abs(ref).max())
