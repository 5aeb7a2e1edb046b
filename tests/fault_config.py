"""The tiny config of tests/helpers.py as a config file, for runs of `python -m contrastive_jax.main`."""

from tests import helpers


def get_config(arg: str = "simclr"):
  c = helpers.tiny_config(arg, total_steps=8, checkpoint_every_steps=2, log_every_steps=1)
  c.synthetic_train_size = 256  # small kNN bank: the final evaluation takes a second
  c.synthetic_test_size = 64
  return c
