"""Set-up: run.sh's install record, the locks, and the package with its console script.

run.sh runs on a copy of the repository's set-up files with a stub pip (PIP=...) that only logs what
it was asked, so no test installs anything from a registry; the package is built into a wheel
offline (no build isolation) and installed without dependencies into a fresh venv that borrows this
interpreter's site-packages.
"""

import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
import venv
import zipfile

import pytest
from packaging.requirements import Requirement

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REQUIREMENTS = ("requirements.txt", "requirements-dev.txt")
PY = "{}.{}".format(*sys.version_info[:2])
SUPPORTED = ("3.11", "3.12")
# Variables that steer run.sh: cleared so that the developer's own environment does not leak in.
STEERING = ("VENV", "PIP", "PYTHON", "JAX_EXTRA", "LOCK", "JAX_DEVICE_CHECK")


def _name(s):
  return re.sub(r"[-_.]+", "-", s).lower()


def _requirements(path):
  out = []
  for line in open(path):
    line = line.split("#")[0].strip()
    if line and not line.startswith("-"):
      out.append(Requirement(line))
  return out


def _lock(path):
  pins = {}
  for line in open(path):
    m = re.match(r"([A-Za-z0-9_.\-]+)==(\S+)", line.strip())
    if m:
      pins[_name(m.group(1))] = m.group(2)
  return pins


# ---------------------------------------------------------------------------------------------
# The locks.


@pytest.mark.parametrize("py", SUPPORTED)
def test_lock_pins_every_requirement_within_its_range(py):
  lock = os.path.join(REPO, "requirements", f"lock-py{py}.txt")
  pins = _lock(lock)
  for req_file in REQUIREMENTS:
    for req in _requirements(os.path.join(REPO, req_file)):
      name = _name(req.name)
      assert name in pins, f"{req_file}: {req.name} is not in {lock} (fix: ./run.sh lock)"
      assert req.specifier.contains(pins[name], prereleases=True), (
        f"{lock} pins {req.name}=={pins[name]}, outside {req_file}'s {req.specifier} "
        "(fix: ./run.sh lock)"
      )


def test_this_environment_is_the_locked_one():
  """The suite runs with exactly the versions of its Python's lock (what run.sh installs)."""
  lock = os.path.join(REPO, "requirements", f"lock-py{PY}.txt")
  if not os.path.exists(lock):
    pytest.skip(f"no lock for Python {PY} (supported: {SUPPORTED})")
  marker = os.path.join(sys.prefix, ".installed")
  if os.path.exists(marker) and "lock=none" in open(marker).read():
    pytest.skip("this venv was installed with LOCK=none")
  installed = {_name(d.metadata["Name"]): d.version for d in importlib.metadata.distributions()}
  wrong = {n: (v, installed.get(n)) for n, v in _lock(lock).items() if installed.get(n) != v}
  assert not wrong, f"{{name: (lock, installed)}} = {wrong} (fix: ./run.sh setup)"


# ---------------------------------------------------------------------------------------------
# run.sh's install record, driven with a stub pip.


@pytest.fixture()
def checkout(tmp_path):
  """A copy of the set-up files, a bare venv that sees this interpreter's packages, a stub pip."""
  repo = tmp_path / "repo"
  repo.mkdir()
  for f in ("run.sh", "pyproject.toml", *REQUIREMENTS):
    shutil.copy2(os.path.join(REPO, f), repo / f)
  shutil.copytree(os.path.join(REPO, "requirements"), repo / "requirements")
  env_dir = repo / ".venv"
  venv.create(env_dir, with_pip=False)
  py = env_dir / "bin" / "python"
  site = subprocess.check_output(
    [str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], text=True
  ).strip()
  # This interpreter's packages (jax among them) after the venv's own: a real jax.devices().
  with open(os.path.join(site, "parent.pth"), "w") as f:
    f.write("\n".join(p for p in sys.path if p.endswith("site-packages")) + "\n")
  log = tmp_path / "pip.log"
  stub = tmp_path / "pip"
  stub.write_text(
    "#!/bin/sh\n"
    f'echo "$*" >> "{log}"\n'
    # A named argument that the stub refuses, as pip does with a wheel it cannot find.
    'for a in "$@"; do [ -n "$STUB_PIP_FAIL_ON" ] && [ "$a" = "$STUB_PIP_FAIL_ON" ] && exit 1; done\n'
    "exit 0\n"
  )
  stub.chmod(0o755)
  env = {k: v for k, v in os.environ.items() if k not in STEERING}
  env["PIP"] = str(stub)

  def run(*args, **extra_env):
    before = log.read_text() if log.exists() else ""
    p = subprocess.run(
      ["bash", str(repo / "run.sh"), *args],
      env={**env, **extra_env},
      capture_output=True,
      text=True,
      timeout=120,
    )
    now = log.read_text() if log.exists() else ""
    return p, now[len(before) :]

  run.repo = repo
  run.marker = env_dir / ".installed"
  return run


def _installs(pip_calls):
  return [l for l in pip_calls.splitlines() if "-r requirements.txt" in l]


def test_same_inputs_install_once_then_each_change_installs_again(checkout):
  p, calls = checkout("setup")
  assert p.returncode == 0, p.stderr
  (first,) = _installs(calls)
  assert f"-c requirements/lock-py{PY}.txt" in first
  assert "--no-deps --no-build-isolation -e ." in calls
  record = checkout.marker.read_text()
  assert "python={}.{}.{}".format(*sys.version_info[:3]) in record
  assert "jax_extra=none" in record and f"lock=requirements/lock-py{PY}.txt " in record

  p, calls = checkout("setup")  # the same inputs: pip is not run at all
  assert p.returncode == 0 and calls == "", (p.stdout, calls)
  assert checkout.marker.read_text() == record

  # A changed requirement: one install, then quiet again. Not in the lock -> a warning naming it.
  with open(checkout.repo / "requirements.txt", "a") as f:
    f.write("cowsay>=6.0\n")
  p, calls = checkout("setup")
  assert p.returncode == 0, p.stderr
  assert len(_installs(calls)) == 1 and "requirements.txt" in p.stdout
  assert "cowsay" in p.stderr and "./run.sh lock" in p.stderr
  assert checkout("setup")[1] == ""

  # A changed lock.
  with open(checkout.repo / "requirements" / f"lock-py{PY}.txt", "a") as f:
    f.write("cowsay==6.1\n")
  assert len(_installs(checkout("setup")[1])) == 1
  assert checkout("setup")[1] == ""

  # LOCK=none is an input too: the ranges only, no -c.
  p, calls = checkout("setup", LOCK="none")
  (ranges,) = _installs(calls)
  assert " -c " not in ranges and "lock=none" in checkout.marker.read_text()


def test_changed_python_or_extra_rebuilds(checkout):
  assert checkout("setup")[0].returncode == 0
  other = checkout.repo.parent / "python9"
  other.write_text("#!/bin/sh\necho 3.99.0\n")  # answers py_version like a Python 3.99.0
  other.chmod(0o755)
  p, calls = checkout("setup", "--dry-run", PYTHON=str(other))
  assert p.returncode == 0 and calls == ""
  assert "would recreate" in p.stdout and "3.99.0" in p.stdout, p.stdout
  # The venv's own Python asked by name: nothing to do.
  p, _ = checkout("setup", "--dry-run", PYTHON=str(checkout.repo / ".venv" / "bin" / "python"))
  assert "up to date" in p.stdout, p.stdout
  # Adding an extra to a CPU venv installs into it; changing one rebuilds (no stale plugin).
  p, _ = checkout("setup", "--dry-run", JAX_EXTRA="jax[cuda12]")
  assert "would install" in p.stdout and "jax[cuda12]" in p.stdout, p.stdout
  checkout.marker.write_text(
    checkout.marker.read_text().replace("jax_extra=none", "jax_extra=jax[tpu]")
  )
  p, _ = checkout("setup", "--dry-run", JAX_EXTRA="jax[cuda12]")
  assert "would recreate" in p.stdout and "jax[tpu] -> jax[cuda12]" in p.stdout, p.stdout
  # Unset keeps the recorded extra: no change.
  assert "up to date" in checkout("setup", "--dry-run")[0].stdout


def test_extra_without_its_platform_fails_before_training(checkout):
  workdir = checkout.repo / "w"
  args = ("train", "--config=configs/simclr_cifar10.py:cpu", f"--workdir={workdir}")
  p, calls = checkout(*args, JAX_EXTRA="jax[cuda12]")
  # The stub "installed" it, but jax (this machine's, CPU only) shows no GPU: stop with the fix.
  assert len(_installs(calls)) == 1 and "jax[cuda12]" in _installs(calls)[0]
  assert p.returncode != 0
  assert "asks for gpu devices, but jax.devices() shows: cpu" in p.stderr, p.stderr
  assert "JAX_EXTRA=none" in p.stderr and "nvidia-smi" in p.stderr
  assert not workdir.exists()
  # Remembered: the next start without JAX_EXTRA checks again, without reinstalling.
  p, calls = checkout(*args)
  assert p.returncode != 0 and calls == "" and "asks for gpu" in p.stderr
  # The escape hatch skips the check (and would train; here the copy has no configs/).
  p, _ = checkout("setup", JAX_DEVICE_CHECK="0")
  assert p.returncode == 0 and "jax devices" not in p.stdout


def test_extra_that_fails_to_install_says_so_and_retries(checkout):
  p, _ = checkout("setup", JAX_EXTRA="jax[tpu]", STUB_PIP_FAIL_ON="jax[tpu]")
  assert p.returncode != 0
  assert "pip could not install" in p.stderr and "JAX_EXTRA=jax[tpu]" in p.stderr, p.stderr
  assert "JAX_EXTRA=none" in p.stderr
  assert not checkout.marker.exists()
  p, calls = checkout("setup", "--dry-run", JAX_EXTRA="jax[tpu]")
  assert "would install" in p.stdout  # nothing recorded: the next start tries again


# ---------------------------------------------------------------------------------------------
# The package.


def test_wheel_installs_with_assets_and_console_script_equals_module(tmp_path):
  # Built from a copy: setuptools writes build/ and *.egg-info beside the sources.
  src = tmp_path / "src"
  shutil.copytree(
    os.path.join(REPO, "contrastive_jax"),
    src / "contrastive_jax",
    ignore=shutil.ignore_patterns("__pycache__"),
  )
  for f in ("pyproject.toml", "README.md", *REQUIREMENTS):
    shutil.copy2(os.path.join(REPO, f), src / f)
  wheels = tmp_path / "wheels"
  subprocess.run(
    [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w"]
    + [str(wheels), str(src)],
    check=True,
    timeout=300,
    cwd=tmp_path,
  )
  (whl,) = wheels.glob("contrastive_jax-*.whl")
  names = zipfile.ZipFile(whl).namelist()
  for root, _, files in os.walk(os.path.join(REPO, "contrastive_jax")):
    rel = os.path.relpath(root, REPO)
    for f in files:
      if f.endswith(".py") or "assets" in rel:
        assert f"{rel}/{f}" in names, f"{rel}/{f} is not in the wheel (pyproject.toml package-data)"
  entry_points = zipfile.ZipFile(whl).read(
    next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
  )
  assert b"contrastive-jax = contrastive_jax.main:run" in entry_points

  # A fresh venv: the wheel without its dependencies, which it borrows from this interpreter.
  env_dir = tmp_path / "venv"
  venv.create(env_dir, with_pip=False)
  py = str(env_dir / "bin" / "python")
  site = subprocess.check_output(
    [py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], text=True
  ).strip()
  with open(os.path.join(site, "parent.pth"), "w") as f:
    f.write("\n".join(p for p in sys.path if p.endswith("site-packages")) + "\n")
  subprocess.run(
    [sys.executable, "-m", "pip", "--python", py, "install", "-q", "--no-deps", str(whl)],
    check=True,
    timeout=300,
  )
  where = subprocess.check_output(
    [py, "-c", "import contrastive_jax; print(contrastive_jax.__file__)"], cwd=tmp_path, text=True
  )
  assert where.startswith(site), where  # the installed copy, not the checkout

  script = env_dir / "bin" / "contrastive-jax"
  env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
  cli = subprocess.run(
    [str(script), "--help"], capture_output=True, text=True, env=env, cwd=tmp_path
  )
  mod = subprocess.run(
    [py, "-m", "contrastive_jax.main", "--help"],
    capture_output=True,
    text=True,
    env=env,
    cwd=tmp_path,
  )
  # The same help (docstring, both flags) as python -m; only the program's name differs.
  assert "--config: Config file" in cli.stdout and "--workdir" in cli.stdout, cli.stdout
  assert cli.returncode == mod.returncode  # absl exits 1 after --help
  assert cli.stdout.replace(str(script), "PROG") == mod.stdout.replace(
    os.path.join(site, "contrastive_jax", "main.py"), "PROG"
  )

  # --config=configs/x.py is a file path: read from the working directory, as with python -m.
  ok = subprocess.run(
    [str(script), "--config=configs/simclr_cifar10.py:cpu", "--config.total_steps=3", "--help"],
    capture_output=True,
    text=True,
    env=env,
    cwd=REPO,
  )
  assert "Traceback" not in ok.stderr and "--workdir" in ok.stdout + ok.stderr, ok.stderr
  bad = subprocess.run(
    [str(script), "--config=configs/simclr_cifar10.py:cpu", "--config.no_such_field=1", "--help"],
    capture_output=True,
    text=True,
    env=env,
    cwd=REPO,
  )
  assert bad.returncode != 0 and "no_such_field" in bad.stderr  # the file was loaded and locked
