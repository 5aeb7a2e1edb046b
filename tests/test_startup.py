"""The command line's start-up: what `python -m contrastive_jax.main` sets before TensorFlow loads."""

import subprocess
import sys

from tests.test_fault_tolerance import REPO, subprocess_env


def test_tensorflow_starts_without_keras():
  # main.py sets TF_USE_LEGACY_KERAS=1 (unless the user set it), so `import tensorflow` skips its
  # eager import of the separate keras package (~1.8 s of each start on 2 cores; TF's own internal
  # tensorflow.python.keras still loads); TensorBoard summaries still work.
  env = subprocess_env()
  env.pop("TF_USE_LEGACY_KERAS", None)
  code = (
    "import os, sys, tempfile\n"
    "import contrastive_jax.main\n"
    "import tensorflow as tf\n"
    "w = tf.summary.create_file_writer(tempfile.mkdtemp())\n"
    "with w.as_default():\n"
    "  assert tf.summary.scalar('x', 1.0, step=0)\n"
    "print(os.environ['TF_USE_LEGACY_KERAS'], sorted(m for m in sys.modules if m.split('.')[0] == 'keras'))\n"
  )
  out = subprocess.run(
    [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=120
  )
  assert out.returncode == 0, out.stderr[-3000:]
  assert out.stdout.strip().splitlines()[-1] == "1 []", out.stdout
