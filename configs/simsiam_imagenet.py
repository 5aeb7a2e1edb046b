r"""SimSiam on ImageNet (Chen & He 2021), ResNet-50.

3-layer projector 2048-2048-2048 (BN on every layer, output included), predictor 512-2048
bottleneck, batch 512, SGD lr 0.05 x B/256 (= 0.1), momentum 0.9, weight decay 1e-4, cosine, 100
epochs, MoCo v2 augmentation (crops of 20-100%, no 10% floor), each view through the network on its
own (per-view BN), the predictor's learning rate held fixed (not decayed): the README's command
(main_simsiam.py --fix-pred-lr), which reports 68.1% linear top-1 after 100 epochs (`paper`).
`cpu`: a tiny ResNet on the offline 'synthetic' dataset.

Launch on a TPU pod or a GPU host:
  ./run.sh train --config=configs/simsiam_imagenet.py:paper --workdir=gs://$BUCKET/simsiam_in \
    --config.data_dir=gs://$BUCKET/tensorflow_datasets
  python -m contrastive_jax.main --config=configs/simsiam_imagenet.py:cpu --workdir=runs/simsiam_in_cpu
"""

from contrastive_jax.config_lib import augment, base, datasets, methods, presets

PRESETS = ("paper", "cpu")


def get_config(preset: str = "paper"):
  presets.check(preset, __file__, PRESETS)
  c = methods.configure(base.base_config(), "simsiam")
  datasets.imagenet2012(c)
  c.aug = augment.view(224, blur_prob=0.5, crop_area_min=0.2, crop_min_object_covered=0.0)
  c.head.update(hidden_dims=(2048, 2048), out_dim=2048)
  c.predictor.update(hidden_dims=(512,), out_dim=2048)
  c.update(batch_size=512, total_epochs=100.0, checkpoint_every_steps=5000)
  c.optim.update(name="sgd", base_lr=0.05, weight_decay=1e-4, warmup_epochs=0.0)
  c.optim.param_groups.predictor = dict(fixed_lr=True)
  return presets.smoke(c) if preset == "cpu" else c
