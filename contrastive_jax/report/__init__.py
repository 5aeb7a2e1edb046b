"""Reporting of evaluation results: figures (plots.py) and embedding export (export.py)."""
