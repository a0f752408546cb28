"""Prepared runs: `prepare` does what depends only on the config's data and model (read, hash, encode,
resolve the model directory) once; `run_one` trains one strategy on a prepared run into a run directory.
`train` is the two in a row; compare, tune and continual learning are loops over `run_one`, and a torchrun
worker is `run_one` inside a process group."""
