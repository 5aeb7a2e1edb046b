"""Input pipeline (pipeline.py: TFDS or synthetic -> per-process shard -> views -> host batches) and
augmentation ops (augment.py). Import the submodules directly; this package imports nothing heavy."""
