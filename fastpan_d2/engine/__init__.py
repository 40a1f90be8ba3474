"""Trainer, launch helpers and the inference timing hook."""
