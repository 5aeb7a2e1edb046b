"""The batch-size scaling harness (SimCLR Fig. 9 / Table B.1): grids of pre-training runs and their table.

sweep.py    config.mode='sweep' (through contrastive_jax.main): one pre-training run per grid point.
collect.py  a sweep's results as a Markdown/CSV table and a figure.
__main__.py the collect command: python -m contrastive_jax.batch_scaling --sweep_dir=W --out=PREFIX
"""
