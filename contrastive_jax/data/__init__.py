"""Input pipeline (pipeline.py: TFDS or synthetic -> per-process shard -> views -> host batches), the
dataset catalog it reads (catalog.py: data_dir, class counts, split sizes, the synthetic set) and
augmentation ops (augment.py). Import the submodules directly; this package imports nothing heavy."""
