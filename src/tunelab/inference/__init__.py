"""Inference: the one way to get outputs from a model — precision and autocast, encoding for prediction,
batched forward passes, generation and the predictions table. Training's evaluation, `predict`, `eval`,
serving and export's parity checks all come here; this package never imports training."""
