"""The data a run sees, from its config: sizes, classes, train and eval iterators for this process."""

import jax

from contrastive_jax.data import catalog, folder, image_text, pipeline


class DataSource:
  """Resolves the dataset once (failing fast and clearly when it is missing) and hands out iterators."""

  def __init__(self, config):
    self.config = config
    # config.text.source set: (image, tokens) batches of data/image_text.py (CLIP, SigLIP).
    self.image_text = image_text.enabled(config)
    if self.image_text:
      self.num_classes, self.train_size = image_text.info(config)
      self.split_sizes = {config.train_split: self.train_size}
    else:
      self.num_classes, shape, self.split_sizes = catalog.dataset_info(
        config.dataset, catalog.resolve_data_dir(config.data_dir), config=config
      )
      self.train_size = catalog.num_examples(config, config.train_split)  # 'train[:90%]' works
    self.image_shape = (config.image_size, config.image_size, 3)
    self.process_index, self.process_count = jax.process_index(), jax.process_count()
    # Folder datasets: labels are indices into the training split's classes (data/folder.py).
    self.class_names = (
      list(folder.classes(config.dataset, config.train_split))
      if folder.is_folder(config.dataset)
      else None
    )
    self.local_batch = config.batch_size // self.process_count

  def train_batches(self, start_step: int = 0):
    reader = image_text if self.image_text else pipeline
    return reader.pretrain_iterator(
      self.config,
      batch_size=self.local_batch,
      process_index=self.process_index,
      process_count=self.process_count,
      start_step=start_step,
      seed=self.config.seed,
    )

  def eval_batches(self, split: str, batch_size: int | None = None):
    per_process = (batch_size or self.config.knn.batch_size) // self.process_count
    per_process = max(
      jax.local_device_count(), per_process // jax.local_device_count() * jax.local_device_count()
    )
    return pipeline.eval_iterator(
      self.config,
      split,
      batch_size=per_process,
      process_index=self.process_index,
      process_count=self.process_count,
    )
