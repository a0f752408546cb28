"""Inference with finished runs (CLI predict/eval; the serving API builds on it)."""
