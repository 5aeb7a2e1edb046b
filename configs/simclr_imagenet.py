r"""SimCLR on ImageNet (ILSVRC-2012), the paper's main setting.

ResNet-50 (ImageNet stem), batch 4096, temperature 0.1, colour strength 1.0 and Gaussian blur
(p=0.5) at 224x224, crops of at least 10% of the image, 10 warm-up epochs then cosine, the official
loss scale (loss_a + loss_b). Presets:
  `100ep` (default) the command of google-research/simclr's README, "the default hyperparameters in
    our paper", with the tf2 code's defaults (SimCLR v2 code): 3-layer projection head 2048-2048-128
    (the last BN learns a scale, no offset), LARS lr 0.075 x sqrt(B) (= 4.8), weight decay 1e-4,
    100 epochs: the README's linear evaluation of this run gives about 64.5% top-1.
  `1000ep` SimCLR v1 (the paper's Table 6, 69.3% linear top-1 for ResNet-50 1x): the v1 head with
    one hidden layer (2048-128), LARS lr 0.3 x B/256 (= 4.8), weight decay 1e-6, 1000 epochs.
  `cpu` a smoke-sized run on imagenette.

Launch on a Cloud TPU VM pod (same command on every worker, e.g. v3-128):
  gcloud compute tpus tpu-vm ssh $TPU --worker=all --command="cd contrastive_jax && \
    ./run.sh train --config=configs/simclr_imagenet.py:100ep --workdir=gs://$BUCKET/simclr_in_100ep"
The data must be prepared with `tfds build imagenet2012` (manual download) into a GCS data_dir:
  --config.data_dir=gs://$BUCKET/tensorflow_datasets
Every value and its source in the official code: docs/fidelity.md.
"""

from contrastive_jax.config_lib import augment, base, datasets, methods, presets

PRESETS = ("100ep", "1000ep", "cpu")


def get_config(preset: str = "100ep"):
  presets.check(preset, __file__, PRESETS)
  c = methods.configure(base.base_config(), "simclr", temperature=0.1, loss_scale=2.0)
  datasets.imagenet2012(c)
  c.aug = augment.view(224, color_strength=1.0, blur_prob=0.5)
  c.head.update(hidden_dims=(2048, 2048), out_dim=128, last_bn_scale=True)
  c.update(batch_size=4096, total_epochs=100.0)
  c.optim.update(base_lr=0.075, lr_scaling="sqrt", weight_decay=1e-4)
  if preset == "1000ep":
    c.update(total_epochs=1000.0, eval_every_epochs=50.0)
    c.head.hidden_dims = (2048,)
    c.optim.update(base_lr=0.3, lr_scaling="linear", weight_decay=1e-6)
  elif preset == "cpu":
    presets.smoke(c, data=datasets.imagenette)
    c.knn.k = 200  # smoke()'s k=20 suits synthetic's 1024-image bank, not imagenette's ~9.5k
  return c
