r"""BYOL on ImageNet (Grill et al. 2020), ResNet-50.

Projector and predictor 4096-256 (BN in the hidden layer), target tau 0.996 -> 1 (cosine over the
run), batch 4096, LARS lr 0.2 x B/256 (= 3.2), weight decay 1.5e-6, 10 warm-up epochs, asymmetric
views (blur 1.0 / 0.1, solarisation 0 / 0.2, colour jitter 0.4/0.4/0.2/0.1 p=0.8). Published linear
top-1: 74.3% after 1000 epochs (`paper`), 72.5% after 300 (`paper_300ep`). `cpu`: a tiny ResNet on
the offline 'synthetic' dataset.

Launch on a TPU pod (every worker):
  ./run.sh train --config=configs/byol_imagenet.py:paper --workdir=/gcs/$BUCKET/byol_in \
    --config.data_dir=gs://$BUCKET/tensorflow_datasets
  python -m contrastive_jax.main --config=configs/byol_imagenet.py:cpu --workdir=runs/byol_in_cpu
"""

from contrastive_jax.config_lib import augment, base, datasets, methods, presets

PRESETS = ("paper", "paper_300ep", "cpu")


def get_config(preset: str = "paper"):
  presets.check(preset, __file__, PRESETS)
  c = methods.configure(base.base_config(), "byol", momentum=0.996)
  datasets.imagenet2012(c)
  c.aug = augment.view(224, blur_prob=1.0)
  c.aug2 = augment.view(224, blur_prob=0.1, solarize_prob=0.2)
  c.head.update(hidden_dims=(4096,), out_dim=256)
  c.predictor.update(hidden_dims=(4096,), out_dim=256)
  c.update(batch_size=4096, total_epochs=1000.0, eval_every_epochs=50.0)
  c.optim.update(base_lr=0.2, weight_decay=1.5e-6)
  if preset == "paper_300ep":
    c.update(total_epochs=300.0, eval_every_epochs=25.0)
    c.optim.update(base_lr=0.3, weight_decay=1e-6)
  elif preset == "cpu":
    presets.smoke(c)
  return c
