"""CONTRASTIVE_JAX_CPU_DEVICES: the command line splits a CPU host into one device per core."""

import re

import pytest

from contrastive_jax import cpu_devices
from tests.test_fault_tolerance import finish, launch, subprocess_env


@pytest.mark.parametrize("cores,expected", [(1, 1), (2, 2), (3, 2), (6, 4), (8, 8), (96, 8)])
def test_default_is_a_power_of_two_up_to_the_cores_and_8(cores, expected):
  assert cpu_devices.default_count(cores) == expected


def test_configure_adds_the_flag_once_and_respects_an_explicit_one():
  env = {"XLA_FLAGS": "--xla_cpu_use_xnnpack=false"}
  assert cpu_devices.configure(env) == cpu_devices.default_count(cpu_devices.usable_cores())
  assert env["XLA_FLAGS"].startswith("--xla_cpu_use_xnnpack=false ")
  assert cpu_devices.configure(env) is None  # already there: unchanged
  assert env["XLA_FLAGS"].count(cpu_devices.FLAG) == 1
  env = {cpu_devices.ENV: "3"}
  assert cpu_devices.configure(env) == 3
  assert env["XLA_FLAGS"] == f"{cpu_devices.FLAG}=3"
  env = {cpu_devices.ENV: "3", "XLA_FLAGS": f"{cpu_devices.FLAG}=3"}
  assert cpu_devices.configure(env) is None  # the same count named twice is fine


@pytest.mark.parametrize("value", ["two", "0", "-1", "1.5"])
def test_bad_value_names_the_variable_and_the_fix(value):
  with pytest.raises(
    ValueError, match=rf"{cpu_devices.ENV}='{re.escape(value)}' must be a positive"
  ):
    cpu_devices.configure({cpu_devices.ENV: value})


def test_contradicting_xla_flags_is_an_error():
  env = {cpu_devices.ENV: "2", "XLA_FLAGS": f"{cpu_devices.FLAG}=8"}
  with pytest.raises(ValueError, match="contradicts"):
    cpu_devices.configure(env)


def _env_without_a_device_count(**extra):
  env = subprocess_env(**extra)
  env["XLA_FLAGS"] = re.sub(rf"{cpu_devices.FLAG}=\d+", "", env["XLA_FLAGS"]).strip()
  return env


def test_the_cli_uses_the_variable(tmp_path):
  # 4 devices (not this machine's default): the batch check, which runs before any data or
  # compilation, sees 4 devices and points at the variable.
  env = _env_without_a_device_count(**{cpu_devices.ENV: "4"})
  rc, out = finish(launch(str(tmp_path / "w"), env, "--config.batch_size=6"), 120)
  assert rc != 0
  assert "config.batch_size=6 must be a positive multiple of the number of devices (4)" in out, out
  assert f"{cpu_devices.ENV}=1" in out, out


def test_the_cli_rejects_a_bad_value_before_starting(tmp_path):
  env = _env_without_a_device_count(**{cpu_devices.ENV: "many"})
  rc, out = finish(launch(str(tmp_path / "w"), env), 120)
  assert rc == 1
  assert f"{cpu_devices.ENV}='many' must be a positive integer" in out, out
  assert not (tmp_path / "w").exists()  # nothing written
