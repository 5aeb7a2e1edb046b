r"""BYOL on ImageNet (Grill et al. 2020), ResNet-50.

The presets of deepmind-research byol/configs/byol.py (_LR_PRESETS, _WD_PRESETS, _EMA_PRESETS):
projector and predictor 4096-256 (BN in the hidden layer), batch 4096, LARS (eta 1e-3) at
lr x B/256, 10 warm-up epochs then cosine, each view through the networks on its own (per-view BN,
byol_experiment.py), asymmetric views (byol/utils/augmentations.py: blur 1.0 / 0.1, solarisation
0 / 0.2, colour jitter 0.4/0.4/0.2/0.1 p=0.8; crops 0.08-1 without a 10% floor,
utils/dataset.py). `paper`: 1000 epochs, lr 0.2 (= 3.2), weight decay 1.5e-6, target tau
0.996 -> 1: 74.3% linear top-1 (the paper; the repository's README: 74.0-74.5%). `paper_300ep`:
300 epochs, lr 0.3, weight decay 1e-6, tau 0.99 -> 1 (the paper's ablations run 300 epochs; 72.5%
linear top-1). `cpu`: a tiny ResNet on the offline 'synthetic' dataset.

Launch on a TPU pod (every worker):
  ./run.sh train --config=configs/byol_imagenet.py:paper --workdir=gs://$BUCKET/byol_in \
    --config.data_dir=gs://$BUCKET/tensorflow_datasets
  python -m contrastive_jax.main --config=configs/byol_imagenet.py:cpu --workdir=runs/byol_in_cpu
"""

from contrastive_jax.config_lib import augment, base, datasets, methods, presets

PRESETS = ("paper", "paper_300ep", "cpu")


def get_config(preset: str = "paper"):
  presets.check(preset, __file__, PRESETS)
  c = methods.configure(base.base_config(), "byol", momentum=0.996)
  datasets.imagenet2012(c)
  asymmetric = dict(color_saturation=0.2, crop_min_object_covered=0.0)
  c.aug = augment.view(224, blur_prob=1.0, **asymmetric)
  c.aug2 = augment.view(224, blur_prob=0.1, solarize_prob=0.2, **asymmetric)
  c.head.update(hidden_dims=(4096,), out_dim=256)
  c.predictor.update(hidden_dims=(4096,), out_dim=256)
  c.update(batch_size=4096, total_epochs=1000.0, eval_every_epochs=50.0)
  c.optim.update(base_lr=0.2, weight_decay=1.5e-6)
  if preset == "paper_300ep":
    c.update(total_epochs=300.0, eval_every_epochs=25.0)
    c.optim.update(base_lr=0.3, weight_decay=1e-6)
    c.method_args.momentum = 0.99  # _EMA_PRESETS[300]
  elif preset == "cpu":
    presets.smoke(c)
  return c
