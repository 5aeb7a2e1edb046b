r"""Linear evaluation (and kNN, retrieval, figures) of a pre-trained encoder.

Every field and its default: contrastive_jax/config_lib/evaluation.py (shared with finetune.py).

The encoder is frozen; features are taken BEFORE the projection head. Hyper-parameters of the linear
probe are chosen on `val_fraction` of the TRAINING split (seeded, stratified); the test split is
used once, at the end.

Presets (`--config=configs/linear_eval.py:PRESET`): cpu    (default) linear probe on precomputed
  features ('features' mode), 3 x 2 (lr, wd) grid, 30 epochs; kNN k in (10, 20, 100, 200);
  retrieval, figures. CIFAR-10 with the CPU-preset ResNet takes a few minutes on 2 CPU cores (see
  benchmarks/README_eval.md). paper  SimCLR's protocol (Appendix B.5): 'augmented' mode (random crop
  + flip each step, frozen encoder, features recomputed per batch), Nesterov SGD, 90 epochs, batch
  4096 on ImageNet / 1024 on CIFAR, a learning-rate grid chosen on the held-out split.

Launch:
  python -m contrastive_jax.main --config=configs/linear_eval.py:cpu \
      --config.pretrained_workdir=runs/simclr_cifar10_cpu --workdir=runs/simclr_cifar10_cpu_linear
  Random-init baseline of the same architecture: add --config.random_init=True (and another --workdir).
  Export test embeddings to W2/embeddings_test.npz: --config.export_split=test
Other datasets (transfer): --config.dataset=cifar100 (default: the pre-training dataset).
"""

from contrastive_jax.config_lib import evaluation, presets

PRESETS = ("cpu", "paper")


def get_config(preset: str = "cpu"):
  presets.check(preset, __file__, PRESETS)
  c = evaluation.eval_config("linear_eval")
  if preset == "paper":
    c.linear.update(mode="augmented", lrs=(0.1, 0.3, 1.0, 3.0), weight_decays=(0.0, 1e-6))
    c.linear.update(epochs=90, batch_size=1024)
  return c
