"""Where and how a run computes: the device, its thread pool, the seed, and the precision the device runs."""

from __future__ import annotations

import os
import random

import numpy as np
import torch

from tunelab.config.schema import RunConfig, TrainConfig
from tunelab.errors import TunelabError
from tunelab.inference.precision import resolve_precision

__all__ = ["seed_everything", "select_device", "resolve_run_precision"]


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def select_device(config: TrainConfig) -> torch.device:
    if config.device == "cuda" or (config.device == "auto" and torch.cuda.is_available()):
        device = torch.device("cuda", _local_gpu())  # torchrun: one GPU a process
        torch.cuda.set_device(device)
        return device
    # one intra-op pool sized to the cores we may use, shared among the processes torchrun started on this
    # machine: no oversubscription
    processes = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    threads = config.num_threads or max(1, len(os.sched_getaffinity(0)) // processes)
    torch.set_num_threads(threads)
    return torch.device("cpu")


def _local_gpu() -> int:
    """This process's GPU: torchrun's LOCAL_RANK, refused with what to do where that GPU does not exist (torch's own
    failure is 'invalid device ordinal' from inside set_device, or a CUDA initialisation error)."""
    if not torch.cuda.is_available():
        raise TunelabError("train.device: cuda, but torch sees no CUDA GPU here (a CPU build of torch, no driver, or "
                           "CUDA_VISIBLE_DEVICES empty); set train.device: cpu or auto")
    local_rank, visible = int(os.environ.get("LOCAL_RANK", "0")), torch.cuda.device_count()
    if local_rank >= visible:
        raise TunelabError(f"train.device: process {local_rank} of this machine needs GPU {local_rank}, but only "
                           f"{visible} {'is' if visible == 1 else 'are'} visible: start at most {visible} processes a "
                           "machine (--nproc / --nproc-per-node), or set train.device: cpu to train on the CPU")
    return local_rank


def resolve_run_precision(config: RunConfig, device: torch.device) -> tuple[RunConfig, str]:
    """The config with the precision that really runs (bf16 only where the device computes it natively), so
    the saved config says what ran; and a note for the user when a request was changed."""
    precision, note = resolve_precision(device, config.train.precision)
    if precision == config.train.precision:
        return config, note
    return config.model_copy(update={"train": config.train.model_copy(update={"precision": precision})}), note
