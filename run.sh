#!/usr/bin/env bash
# contrastive_jax launcher. Sets up .venv on first use, then:
#   ./run.sh                 train the default (SimCLR CPU preset on CIFAR-10), ending with its kNN accuracy
#   ./run.sh test [ARGS]     run the test suite (pytest ARGS; default: all tests, in parallel)
#   ./run.sh train ARGS      python -m contrastive_jax.main ARGS (any config, any workdir)
#   ./run.sh eval ARGS       the same entry point, for configs/linear_eval.py or configs/finetune.py
#
# Multi-GPU host: one process drives all local GPUs; install the CUDA wheels once with
#   JAX_EXTRA="jax[cuda12]" ./run.sh train --config=configs/simclr_cifar10.py:paper --workdir=runs/c10
# GPU cluster (several hosts): run the same command on every host with
#   JAX_COORDINATOR_ADDRESS=host0:1234 JAX_NUM_PROCESSES=N JAX_PROCESS_ID=i ./run.sh train ...
# (SLURM and Open MPI launches are detected without these variables).
# Cloud TPU VM pod: the same command on all workers at once, e.g.
#   gcloud compute tpus tpu-vm ssh $TPU --zone=$ZONE --worker=all --command="cd contrastive_jax && \
#     JAX_EXTRA='jax[tpu]' ./run.sh train --config=configs/simclr_imagenet.py:100ep --workdir=gs://B/run"
#   (jax.distributed.initialize() auto-detects the pod; each host reads its own shard of the data.)
set -euo pipefail
cd "$(dirname "$0")"
ROOT="$(pwd)"
PY="${PYTHON:-python3}"

setup() {
  if [ ! -x .venv/bin/python ]; then
    echo "== creating .venv with $($PY --version)"
    "$PY" -m venv .venv
  fi
  if [ ! -f .venv/.installed ] || [ requirements.txt -nt .venv/.installed ] \
      || [ requirements-dev.txt -nt .venv/.installed ]; then
    echo "== installing requirements (about a minute)"
    .venv/bin/python -m pip install -q --upgrade pip
    .venv/bin/python -m pip install -q -r requirements.txt -r requirements-dev.txt \
      ${JAX_EXTRA:+"$JAX_EXTRA"}
    touch .venv/.installed
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
    WORKDIR="${WORKDIR:-runs/simclr_cifar10_cpu}"
    echo "== SimCLR, CPU preset, CIFAR-10 -> $WORKDIR (resumes if interrupted)"
    exec .venv/bin/python -m contrastive_jax.main --config=configs/simclr_cifar10.py:cpu \
      --workdir="$WORKDIR" "$@"
    ;;
  test)
    setup
    if [ $# -eq 0 ]; then set -- -n 2 -q --durations=15; fi
    # Lint and format first (pyproject.toml [tool.ruff]): CI fails on style before spending minutes.
    .venv/bin/ruff check . && .venv/bin/ruff format --check . >/dev/null \
      || { echo "ruff: style errors above (fix: .venv/bin/ruff format . && .venv/bin/ruff check --fix .)" >&2; exit 1; }
    exec .venv/bin/python -m pytest "$@"
    ;;
  train|eval)
    setup
    exec .venv/bin/python -m contrastive_jax.main "$@"
    ;;
  *)
    echo "usage: ./run.sh [test [pytest args] | train ARGS | eval ARGS]" >&2
    exit 2
    ;;
esac
