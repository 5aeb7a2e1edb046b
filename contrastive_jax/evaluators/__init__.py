"""Evaluation algorithms: pure functions of embeddings and labels (and an embed function, and a mesh
for sharded compute). knn.py, linear.py (probe on features, with hyper-parameter selection),
linear_augmented.py (probe on augmented views of a frozen encoder), retrieval.py, features.py
(embed function x batches -> arrays). No data loading, checkpoint I/O or plotting here: the runs
that compose them are in contrastive_jax/protocols/."""
