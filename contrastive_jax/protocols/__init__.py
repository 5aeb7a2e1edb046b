"""Evaluation protocols: runs that compose the evaluation algorithms (evaluators/) with the step
builder. evaluate.py (the linear_eval / finetune entry), linear_eval.py, finetune.py, monitors.py
(in-run evaluators, by name in Method.evaluators)."""
