"""Entry point: python -m contrastive_jax.main --config=configs/simclr_cifar10.py:cpu --workdir=W

Only two flags. Every hyper-parameter is a config field; override with --config.field=value.
The same command runs on one CPU, a multi-GPU host, and every worker of a TPU pod.
"""

import atexit
import importlib
import os
import sys
import threading
import traceback

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# TensorFlow (the input pipeline only) eagerly imports Keras' optimizers on `import tensorflow`:
# 1.7-2 s of every start on a 2-core CPU, for nothing this program uses. With this set, TF looks
# for the separate tf_keras package instead; where it is absent (it is not a dependency) TF skips
# the import silently. Only `tf.keras` would change, and nothing here touches it (code of your own
# that needs `tf.keras` in this process: run with TF_USE_LEGACY_KERAS=0).
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

from contrastive_jax import cpu_convolutions, cpu_devices  # noqa: E402  (no jax import: before jax)

# Before anything starts jax: on CPU, one device per core is ~1.5x the step rate (cpu_devices.py).
try:
  cpu_devices.configure()
except ValueError as e:  # a bad CONTRASTIVE_JAX_CPU_DEVICES: say so before anything starts
  sys.exit(f"contrastive_jax: {e}")
# Convolutions on XLA's own kernels, not YNNPACK's: weight gradients 1.5-10x faster on CPU.
cpu_convolutions.configure()

from absl import app, flags, logging  # noqa: E402
from ml_collections import config_flags  # noqa: E402

_CONFIG = config_flags.DEFINE_config_file(
  "config", None, "Config file (path[:preset]).", lock_config=True
)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, logs and results.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]} (only --config and --workdir).")
  # TensorFlow is only the input pipeline: keep it off the accelerators.
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  tf.config.set_visible_devices([], "GPU")
  tf.config.set_visible_devices([], "TPU") if tf.config.list_physical_devices("TPU") else None

  from contrastive_jax import sharding  # pylint: disable=g-import-not-at-top

  sharding.maybe_initialize_distributed()
  import jax  # pylint: disable=g-import-not-at-top

  logging.info(
    "JAX %s: process %d/%d, %d local / %d global devices (%s).",
    jax.__version__,
    jax.process_index(),
    jax.process_count(),
    jax.local_device_count(),
    jax.device_count(),
    jax.devices()[0].platform,
  )
  config = _CONFIG.value
  if not flags.FLAGS["verbosity"].present:
    # Keep the console to the progress line and warnings (TFDS logs every file it opens at INFO).
    logging.set_verbosity(logging.WARNING)
  if config.mode == "pretrain":
    from contrastive_jax import train  # pylint: disable=g-import-not-at-top

    results = train.train_and_evaluate(config, _WORKDIR.value)
  elif config.mode in ("linear_eval", "finetune"):
    from contrastive_jax.protocols import evaluate  # pylint: disable=g-import-not-at-top

    results = evaluate.evaluate(config, _WORKDIR.value)
  elif config.mode == "sweep":
    from contrastive_jax.batch_scaling import sweep  # pylint: disable=g-import-not-at-top

    results = sweep.main(config, _WORKDIR.value)
  elif config.mode in ("export", "embed"):
    # protocols/export.py, protocols/embed.py: run(config, workdir).
    module = importlib.import_module(f"contrastive_jax.protocols.{config.mode}")
    results = module.run(config, _WORKDIR.value)
  else:
    raise ValueError(
      f"config.mode={config.mode!r}: use pretrain, linear_eval, finetune, sweep, export or embed."
    )
  if jax.process_index() == 0:
    print(
      "Results:",
      ", ".join(
        f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in sorted(results.items())
      ),
      flush=True,
    )


def run():
  """Console script `contrastive-jax` (pyproject.toml): the same as python -m contrastive_jax.main."""
  # absl's --help shows __main__'s docstring and the key flags of the module named sys.argv[0]; under
  # a console script both are the generated wrapper's, so lend it this module's.
  sys.modules["__main__"].__doc__ = __doc__
  for holder in (_CONFIG, _WORKDIR):
    flags.FLAGS.register_key_flag_for_module(sys.argv[0], flags.FLAGS[holder.name])
  code, last_line = 1, None
  try:
    app.run(main)
  except SystemExit as e:  # app.run ends every run, a good one included, with sys.exit
    code = _exit_status(e.code)
  except KeyboardInterrupt:
    traceback.print_exc()
    code = 130
  except Exception as e:  # pylint: disable=broad-except
    ckpt = sys.modules.get("contrastive_jax.checkpoint")
    if ckpt is not None and isinstance(e, ckpt.CheckpointSaveError):
      # A failed save leaves orbax's write threads behind; they report "Event loop is closed"
      # through sys.unraisablehook while we print, burying the one line that says what to do.
      # Some of them report through sys.excepthook from C++ callbacks, some only while atexit runs,
      # after the traceback: the error's own line is printed again last, where users look.
      sys.unraisablehook = lambda unraisable: None
      sys.excepthook = threading.excepthook = lambda *args: None
      last_line = "".join(traceback.format_exception_only(e)).strip().splitlines()[0]
    traceback.print_exc()
  _exit_without_finalizing(code, last_line)


def _exit_status(code) -> int:
  """What the interpreter would exit with for SystemExit(code)."""
  if code is None:
    return 0
  if isinstance(code, int):
    return code
  print(code, file=sys.stderr)
  return 1


def _exit_without_finalizing(code: int, last_line: str | None = None) -> None:
  """Runs the atexit handlers (jax.distributed's shutdown among them), then leaves.

  Why not a plain return: during interpreter finalization tensorstore's threads (orbax's checkpoint
  I/O) may call back into Python, which kills them mid-C++; about one exit in four then aborted
  with "terminate called ... FATAL: exception not rethrown" (exit 134) after a finished run. Every
  file this program writes is closed by then (with-blocks and `finally` closes), so finalization
  has nothing left to do that matters.
  """
  atexit._run_exitfuncs()  # pylint: disable=protected-access
  logging.flush()
  sys.stdout.flush()
  if last_line:
    print(last_line, file=sys.stderr)
  sys.stderr.flush()
  os._exit(code)


if __name__ == "__main__":
  run()
