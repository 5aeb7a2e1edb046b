#!/usr/bin/env bash
# contrastive_jax launcher. Sets up .venv on first use, then:
#   ./run.sh                 train the default (SimCLR CPU preset on CIFAR-10), ending with its kNN accuracy
#   ./run.sh test [ARGS]     run the test suite (pytest ARGS; default: all tests, in parallel)
#   ./run.sh train ARGS      python -m contrastive_jax.main ARGS (any config, any workdir)
#   ./run.sh eval ARGS       the same entry point, for configs/linear_eval.py or configs/finetune.py
#   ./run.sh setup [--dry-run]   only create or update .venv (--dry-run: say what would be done)
#   ./run.sh lock [ARGS]     re-resolve requirements/lock-py3.11.txt and -py3.12.txt after editing the
#                            requirements (uv pip compile ARGS, e.g. --upgrade-package jax)
#
# Multi-GPU host: one process drives all local GPUs; install the CUDA wheels once with
#   JAX_EXTRA="jax[cuda12]" ./run.sh train --config=configs/simclr_cifar10.py:paper --workdir=runs/c10
# GPU cluster (several hosts): run the same command on every host with
#   JAX_COORDINATOR_ADDRESS=host0:1234 JAX_NUM_PROCESSES=N JAX_PROCESS_ID=i ./run.sh train ... \
#     --workdir=gs://B/run   (a bucket works as a workdir on every host; see README "Fault tolerance")
# (SLURM and Open MPI launches are detected without these variables).
# Cloud TPU VM pod: the same command on all workers at once, e.g.
#   gcloud compute tpus tpu-vm ssh $TPU --zone=$ZONE --worker=all --command="cd contrastive_jax && \
#     JAX_EXTRA='jax[tpu]' ./run.sh train --config=configs/simclr_imagenet.py:100ep --workdir=gs://B/run"
#   (jax.distributed.initialize() auto-detects the pod; each host reads its own shard of the data.)
#
# Set-up. .venv/.installed records what the venv was built from: the Python version, JAX_EXTRA, the
# lock and the hashes of requirements.txt, requirements-dev.txt and pyproject.toml. Each start
# compares; any change updates the venv (same inputs: no pip at all). Variables:
#   PYTHON=python3.12   interpreter; a venv on another version is rebuilt (unset: keep the venv's own)
#   JAX_EXTRA="jax[cuda12]" | "jax[tpu]" | none   accelerator wheels, remembered in the record (later
#                       starts need not repeat it); a change rebuilds the venv so no old plugin lingers.
#                       A GPU/TPU extra must show its platform in jax.devices() before anything runs
#                       (JAX_DEVICE_CHECK=0 skips that check, e.g. when building an image off the machine).
#   LOCK=FILE | none    pip constraints (default requirements/lock-py<X.Y>.txt: the versions the tests
#                       passed with; none: only the ranges in requirements.txt)
#   VENV=DIR            the venv (default .venv); e.g. VENV=.venv-py3.12 keeps a second Python beside it
#   PIP="CMD"           how pip is run (default "$VENV/bin/python -m pip"; tests/test_setup.py stubs it)
set -euo pipefail
cd "$(dirname "$0")"
ROOT="$(pwd)"
VENV="${VENV:-.venv}"
MARKER="$VENV/.installed"
REQS="requirements.txt requirements-dev.txt pyproject.toml"  # hashed into the marker

die() { printf '%s\n' "$@" >&2; exit 1; }

py_version() { "$1" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])' 2>/dev/null; }

file_hash() {  # sha256 of a file (coreutils or macOS)
  if command -v sha256sum >/dev/null; then sha256sum "$1" | cut -d' ' -f1
  else shasum -a 256 "$1" | cut -d' ' -f1; fi
}

recorded() {  # a key's value in the marker ("" when absent)
  if [ -f "$MARKER" ]; then sed -n "s/^$1=//p" "$MARKER" | head -n 1; fi
}

platform_of() {  # the jax platform an extra asks for: gpu, tpu or nothing
  case "$1" in
    *tpu*) echo tpu ;;
    *cuda* | *rocm* | *gpu*) echo gpu ;;
  esac
}

pkg_names() {  # normalised distribution names listed in requirement/lock files
  sed -e 's/#.*//' -e 's/[[:space:]]//g' "$@" | grep -v '^-' | sed -E 's/[;<>=!~[@].*//' \
    | tr 'A-Z_.' 'a-z--' | grep . | sort -u
}

# Decide what setup must do (sets PY_NEW, RECREATE, INSTALL, WHY, WANT_EXTRA, LOCK_FILE, MANIFEST).
plan_setup() {
  RECREATE=0 INSTALL=0 WHY="" PY_NEW="${PYTHON:-python3}"
  local have_ver="" want_ver=""
  [ -x "$VENV/bin/python" ] && have_ver="$(py_version "$VENV/bin/python")"
  if [ -n "${PYTHON:-}" ] || [ -z "$have_ver" ]; then
    want_ver="$(py_version "$PY_NEW")" \
      || die "PYTHON=$PY_NEW: not found or does not run. Fix: PYTHON=/path/to/python3.11 (or 3.12) ./run.sh ..."
  fi
  if [ -z "$have_ver" ]; then
    RECREATE=1 WHY="no working $VENV"
  elif [ -n "$want_ver" ] && [ "$want_ver" != "$have_ver" ]; then
    RECREATE=1 WHY="$VENV is Python $have_ver, PYTHON=$PY_NEW is $want_ver"
  fi
  if [ -z "${PYTHON:-}" ] && [ -n "$have_ver" ]; then  # a rebuild keeps the venv's own interpreter
    PY_NEW="$("$VENV/bin/python" -c 'import sys; print(sys._base_executable)')"
  fi
  local ver="${want_ver:-$have_ver}"
  PY_MM="${ver%.*}"

  # JAX_EXTRA unset or empty keeps the recorded one; "none" asks for plain (CPU) jax.
  local old_extra
  old_extra="$(recorded jax_extra)"
  WANT_EXTRA="${JAX_EXTRA:-${old_extra:-none}}"
  if [ "$RECREATE" = 0 ] && [ -n "$old_extra" ] && [ "$old_extra" != "$WANT_EXTRA" ] \
      && [ "$old_extra" != none ]; then
    RECREATE=1 WHY="JAX_EXTRA changed: $old_extra -> $WANT_EXTRA (fresh venv, so no old plugin lingers)"
  fi

  case "${LOCK:-}" in
    none) LOCK_FILE="" ;;
    "")
      LOCK_FILE="requirements/lock-py$PY_MM.txt"
      if [ ! -f "$LOCK_FILE" ]; then
        echo "== warning: no lock for Python $PY_MM (locks: $(ls requirements/lock-py*.txt 2>/dev/null \
          | tr '\n' ' ')); installing from the ranges in requirements.txt, versions not pinned" >&2
        LOCK_FILE=""
      fi ;;
    *) [ -f "$LOCK" ] || die "LOCK=$LOCK: no such file. Fix: LOCK=requirements/lock-py$PY_MM.txt or LOCK=none"
       LOCK_FILE="$LOCK" ;;
  esac

  MANIFEST="python=$ver
jax_extra=$WANT_EXTRA
lock=${LOCK_FILE:-none}${LOCK_FILE:+ $(file_hash "$LOCK_FILE")}"
  local f
  for f in $REQS; do MANIFEST="$MANIFEST
$f=$(file_hash "$f")"; done

  if [ "$RECREATE" = 1 ]; then
    INSTALL=1
  elif [ ! -s "$MARKER" ]; then  # absent, or the empty stamp of older run.sh versions
    INSTALL=1 WHY="no record of an install in $MARKER"
  elif [ "$(grep -v '^#' "$MARKER")" != "$MANIFEST" ]; then
    INSTALL=1 WHY="changed since the last install:"
    local line
    while IFS= read -r line; do
      [ "$(recorded "${line%%=*}")" = "${line#*=}" ] || WHY="$WHY ${line%%=*}"
    done <<<"$MANIFEST"
  fi
}

pip_cmd() {
  # shellcheck disable=SC2086  # PIP is a command line, split on purpose
  if [ -n "${PIP:-}" ]; then $PIP "$@"; else "$VENV/bin/python" -m pip "$@"; fi
}

install_failed() {
  local extra_hint=""
  [ "$WANT_EXTRA" != none ] && extra_hint="
   JAX_EXTRA=$WANT_EXTRA: check the name (jax[cuda12], jax[cuda13], jax[tpu]: see the install page,
   https://docs.jax.dev/en/latest/installation.html) and that wheels exist for this OS/CPU and
   Python $PY_MM; or go back to CPU with JAX_EXTRA=none ./run.sh ..."
  die "== pip could not install the requirements${LOCK_FILE:+ with the pins of $LOCK_FILE} (its output is above).$extra_hint
   Nothing was recorded in $MARKER, so the next start tries again."
}

check_devices() {  # the platform JAX_EXTRA asks for must be the one jax runs on, before anything runs
  local want got err
  want="$(platform_of "$WANT_EXTRA")"
  [ -n "$want" ] && [ "${JAX_DEVICE_CHECK:-1}" != 0 ] || return 0
  err="$(mktemp)"
  got="$("$VENV/bin/python" -c 'import jax; d = jax.devices(); print(f"{d[0].platform} ({len(d)} x {d[0].device_kind})")' 2>"$err")" \
    || got="(jax failed: $(tail -n 3 "$err"))"
  if [ "${got%% *}" != "$want" ]; then
    local said
    said="$(grep -v '^[[:space:]]*$' "$err" | tail -n 3 || true)"
    rm -f "$err"
    die "== JAX_EXTRA=$WANT_EXTRA asks for $want devices, but jax.devices() shows: $got" \
      ${said:+"   jax said: $said"} \
      "   Fix: make the accelerator visible (GPU: nvidia-smi lists it and its driver supports the CUDA of" \
      "   the extra; TPU: run on the TPU VM, no other process holding the chips), or rebuild for CPU with" \
      "   JAX_EXTRA=none ./run.sh ..., or start anyway with JAX_DEVICE_CHECK=0."
  fi
  rm -f "$err"
  echo "== jax devices: $got"
}

setup() {
  plan_setup
  if [ "${DRY_RUN:-0}" = 1 ]; then
    if [ "$RECREATE" = 1 ]; then echo "would recreate $VENV with $PY_NEW: $WHY"
    elif [ "$INSTALL" = 1 ]; then echo "would install into $VENV: $WHY"
    else echo "up to date: $VENV ($MARKER matches)"; fi
    [ "$INSTALL" = 1 ] && echo "would run: pip install -r requirements.txt -r requirements-dev.txt" \
      "${LOCK_FILE:+-c $LOCK_FILE}$([ "$WANT_EXTRA" != none ] && printf ' %s' "$WANT_EXTRA")"
    return 0
  fi
  if [ "$RECREATE" = 1 ]; then
    echo "== creating $VENV with $("$PY_NEW" --version 2>&1) ($WHY)"
    if [ -e "$VENV" ]; then
      [ -f "$VENV/pyvenv.cfg" ] || die "VENV=$VENV exists but is not a venv: not touching it. Fix: VENV=another/dir"
      rm -rf "$VENV"
    fi
    "$PY_NEW" -m venv "$VENV"
  fi
  if [ "$INSTALL" = 1 ]; then
    echo "== installing requirements${LOCK_FILE:+ pinned by $LOCK_FILE}$([ "$WANT_EXTRA" != none ] \
      && printf ' + %s' "$WANT_EXTRA") into $VENV (a few minutes the first time; $WHY)"
    if [ -n "$LOCK_FILE" ]; then
      local missing
      missing="$(comm -23 <(pkg_names requirements.txt requirements-dev.txt) <(pkg_names "$LOCK_FILE") | tr '\n' ' ')"
      [ -z "$missing" ] || echo "== warning: not in $LOCK_FILE, so not pinned: $missing(fix: ./run.sh lock)" >&2
    fi
    rm -f "$MARKER"
    pip_cmd install -q --upgrade pip || install_failed
    # The lock is a constraints file: it pins every package the requirements pull in, and leaves an
    # extra's own additions (CUDA/TPU plugins) to the versions that the pinned jax itself requires.
    pip_cmd install -q -r requirements.txt -r requirements-dev.txt ${LOCK_FILE:+-c "$LOCK_FILE"} \
      $([ "$WANT_EXTRA" != none ] && printf '%s' "$WANT_EXTRA") || install_failed
    # The package itself, editable (the console script contrastive-jax; imports from any directory).
    pip_cmd install -q --no-deps --no-build-isolation -e . || install_failed
    { echo "# written by ./run.sh after a successful install; compared at each start"
      printf '%s\n' "$MANIFEST"; } >"$MARKER"
  fi
  # Offline default: the prepared TFDS data_dir beside the checkout.
  if [ -z "${TFDS_DATA_DIR:-}" ] && [ -d "$ROOT/../shared/tensorflow_datasets" ]; then
    export TFDS_DATA_DIR="$ROOT/../shared/tensorflow_datasets"
  fi
  export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}"
}

cmd="${1:-default}"
[ $# -gt 0 ] && shift
case "$cmd" in
  default)
    setup
    check_devices
    WORKDIR="${WORKDIR:-runs/simclr_cifar10_cpu}"
    echo "== SimCLR, CPU preset, CIFAR-10 -> $WORKDIR (resumes if interrupted)"
    exec "$VENV/bin/python" -m contrastive_jax.main --config=configs/simclr_cifar10.py:cpu \
      --workdir="$WORKDIR" "$@"
    ;;
  test)
    setup  # no device check: the tests run on 8 fake CPU devices wherever they are
    if [ $# -eq 0 ]; then set -- -n 2 -q --durations=15; fi
    # Lint and format first (pyproject.toml [tool.ruff]): CI fails on style before spending minutes.
    "$VENV/bin/ruff" check . && "$VENV/bin/ruff" format --check . >/dev/null \
      || { echo "ruff: style errors above (fix: $VENV/bin/ruff format . && $VENV/bin/ruff check --fix .)" >&2; exit 1; }
    exec "$VENV/bin/python" -m pytest "$@"
    ;;
  train|eval)
    setup
    check_devices
    exec "$VENV/bin/python" -m contrastive_jax.main "$@"
    ;;
  setup)
    [ "${1:-}" = --dry-run ] && DRY_RUN=1
    setup
    [ "${DRY_RUN:-0}" = 1 ] || check_devices
    ;;
  lock)
    setup
    # Same versions as before unless asked (uv keeps the pins already in -o FILE); Linux x86-64
    # wheels for glibc >= 2.31 (Ubuntu 20.04+, what libtpu needs too).
    for v in 3.11 3.12; do
      "$VENV/bin/uv" pip compile -q requirements.txt requirements-dev.txt --python-version "$v" \
        --python-platform x86_64-manylinux_2_31 --custom-compile-command "./run.sh lock" \
        -o "requirements/lock-py$v.txt" "$@"
      echo "== requirements/lock-py$v.txt: $(grep -c '==' "requirements/lock-py$v.txt") pins"
    done
    setup  # the venv follows the new lock at once
    ;;
  *)
    echo "usage: ./run.sh [test [pytest args] | train ARGS | eval ARGS | setup [--dry-run] | lock [uv args]]" >&2
    exit 2
    ;;
esac
