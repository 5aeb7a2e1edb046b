r"""SimCLR on ImageNet (ILSVRC-2012), the paper's main setting.

ResNet-50 (ImageNet stem), 3-layer projection head (SimCLR v2 style: 2048-2048-128), batch 4096,
LARS with lr 0.3 x B/256 (= 4.8), weight decay 1e-6, 10 warm-up epochs then cosine, temperature 0.1,
colour strength 1.0 and Gaussian blur (p=0.5) at 224x224. Presets: `100ep` (default, the paper's
ablation budget: ~64.5% linear top-1 at batch 4096 in its Figure 9) and `1000ep` (69.3% linear top-1
in the paper's Table 6 for ResNet-50 1x), `cpu` (a smoke-sized run on imagenette-like data).

Launch on a Cloud TPU VM pod (same command on every worker, e.g. v3-128):
  gcloud compute tpus tpu-vm ssh $TPU --worker=all --command="cd contrastive_jax && \
    ./run.sh train --config=configs/simclr_imagenet.py:100ep --workdir=/gcs/$BUCKET/simclr_in_100ep"
The data must be prepared with `tfds build imagenet2012` (manual download) into a GCS data_dir:
  --config.data_dir=gs://$BUCKET/tensorflow_datasets
"""

from contrastive_jax.config_lib import augment, base, datasets, methods, presets

PRESETS = ("100ep", "1000ep", "cpu")


def get_config(preset: str = "100ep"):
  presets.check(preset, __file__, PRESETS)
  c = methods.configure(base.base_config(), "simclr", temperature=0.1)
  datasets.imagenet2012(c)
  c.aug = augment.view(224, color_strength=1.0, blur_prob=0.5)
  c.head.update(hidden_dims=(2048, 2048), out_dim=128)
  c.update(batch_size=4096, total_epochs=100.0)
  c.optim.weight_decay = 1e-6
  if preset == "1000ep":
    c.update(total_epochs=1000.0, eval_every_epochs=50.0)
  elif preset == "cpu":
    presets.smoke(c, data=datasets.imagenette)
    c.knn.k = 200  # smoke()'s k=20 suits synthetic's 1024-image bank, not imagenette's ~9.5k
  return c
