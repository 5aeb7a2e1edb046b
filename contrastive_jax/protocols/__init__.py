"""Evaluation protocols: runs that compose the evaluation algorithms with the step builder."""
