"""Shared pieces of the configs in configs/: fields and defaults, views, datasets, methods, presets.

Each configs/*.py composes these into the recipe it is (big_vision style):
  base        every field of a pre-training run with its default (`base_config`), the `sweep` group
  augment     the one augmentation-view builder (`view`, `crop_flip`)
  datasets    dataset presets (cifar10, imagenet2012, synthetic, imagenette)
  methods     per-method defaults (method_args, head and predictor flags, CPU predictor widths)
  presets     the shared CPU-sized runs (`cpu`, `smoke`) and the unknown-preset check
  evaluation  every field of a linear-evaluation or fine-tuning run (`eval_config`)
Leaves of the import graph: they import ml_collections and each other, nothing else of ours.
"""
