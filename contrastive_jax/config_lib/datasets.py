"""Dataset presets: the data fields (and, for ImageNet, the model and cadence) each dataset implies.

Each preset also sets the output size of the views already in the config (`resize`), so a recipe
can build its views once and switch data in a preset (e.g. ImageNet at 224 -> synthetic at 32).
"""

import ml_collections


def resize(c: ml_collections.ConfigDict, image_size: int) -> None:
  """Sets the image size of the run and of both views."""
  c.image_size = image_size
  c.aug.image_size = image_size
  if c.aug2 is not None:
    c.aug2.image_size = image_size


def cifar10(c: ml_collections.ConfigDict) -> None:
  """CIFAR-10 from TFDS at 32 px, cached in memory; the ResNet's CIFAR stem (the defaults)."""
  c.dataset = "cifar10"
  resize(c, 32)


def imagenet2012(c: ml_collections.ConfigDict) -> None:
  """ILSVRC-2012 from TFDS (prepared with `tfds build imagenet2012`) at 224 px, ResNet-50.

  Streams (no cache) through a 50k shuffle buffer, evaluates on the validation split; logs every
  100 steps, checkpoints every 2500 and runs the kNN monitor in batches of 1024, as pod-sized runs
  want.
  """
  c.dataset = "imagenet2012"
  c.eval_split = "validation"
  resize(c, 224)
  c.shuffle_buffer = 50_000
  c.cache = False
  c.model.update(name="resnet50", width=1.0, stem="imagenet", norm="batch")
  c.log_every_steps = 100
  c.checkpoint_every_steps = 2500
  c.knn.batch_size = 1024


def synthetic(c: ml_collections.ConfigDict) -> None:
  """The offline 'synthetic' dataset (generated, no download) at 32 px, cached."""
  c.dataset = "synthetic"
  c.eval_split = "test"
  c.cache = True
  resize(c, 32)


def imagenette(c: ml_collections.ConfigDict) -> None:
  """Imagenette (10 ImageNet classes, TFDS imagenette/160px-v2) at 64 px."""
  c.dataset = "imagenette/160px-v2"
  resize(c, 64)
