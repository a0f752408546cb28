"""Where and how a run computes: the device, its thread pool, the seed, and the precision the device runs."""

from __future__ import annotations

import os
import random

import numpy as np
import torch

from tunelab.config.schema import RunConfig, TrainConfig
from tunelab.inference.precision import resolve_precision

__all__ = ["seed_everything", "select_device", "resolve_run_precision"]


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def select_device(config: TrainConfig) -> torch.device:
    if config.device == "cuda" or (config.device == "auto" and torch.cuda.is_available()):
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))  # torchrun: one GPU a process
        torch.cuda.set_device(device)
        return device
    # one intra-op pool sized to the cores we may use, shared among the processes torchrun started on this
    # machine: no oversubscription
    processes = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    threads = config.num_threads or max(1, len(os.sched_getaffinity(0)) // processes)
    torch.set_num_threads(threads)
    return torch.device("cpu")


def resolve_run_precision(config: RunConfig, device: torch.device) -> tuple[RunConfig, str]:
    """The config with the precision that really runs (bf16 only where the device computes it natively), so
    the saved config says what ran; and a note for the user when a request was changed."""
    precision, note = resolve_precision(device, config.train.precision)
    if precision == config.train.precision:
        return config, note
    return config.model_copy(update={"train": config.train.model_copy(update={"precision": precision})}), note
