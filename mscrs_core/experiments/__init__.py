"""Experiments: one recommendation run, and sweeps of runs executed as papermill chapters."""
