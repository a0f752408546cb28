"""Optimizer, scheduler and RNG state as (safetensors tensors, JSON) pairs, and back.

`torch.save` would be shorter, but a checkpoint is a file a user may get from someone else: pickle can
run code when loaded. Tensors go to safetensors, the rest (numbers, lists, strings) to JSON; Python floats
round-trip exactly through JSON, so a restored optimizer is bit-identical to the saved one.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

__all__ = ["optimizer_state", "load_optimizer_state", "scheduler_state", "load_scheduler_state", "rng_state",
           "load_rng_state", "add_rank_rng", "restore_rank_rng"]


def optimizer_state(optimizer: Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Tensors keyed `<param index>.<key>`; JSON holds the param groups and any non-tensor state."""
    state = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, Any] = {}
    for index, entry in state["state"].items():
        for key, value in entry.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{index}.{key}"] = value
            else:
                scalars[f"{index}.{key}"] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def load_optimizer_state(optimizer: Optimizer, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    state: dict[int, dict[str, Any]] = {}
    for flat, value in [*tensors.items(), *meta["scalars"].items()]:
        index, _, key = flat.partition(".")
        state.setdefault(int(index), {})[key] = value
    groups = [dict(g, betas=tuple(g["betas"])) if "betas" in g else g for g in meta["param_groups"]]
    optimizer.load_state_dict({"state": state, "param_groups": groups})


def scheduler_state(scheduler: LRScheduler) -> dict[str, Any]:
    """The scheduler's counters; the LR lambdas are code, rebuilt from the config, not saved."""
    return {k: v for k, v in scheduler.state_dict().items() if k != "lr_lambdas"}


def load_scheduler_state(scheduler: LRScheduler, meta: dict[str, Any]) -> None:
    current = scheduler.state_dict()
    if "lr_lambdas" in current:
        meta = {**meta, "lr_lambdas": [None] * len(current["lr_lambdas"])}
    scheduler.load_state_dict(meta)


def rng_state() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Every generator a training step may draw from: torch (dropout), CUDA, numpy and Python."""
    tensors = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, cuda_state in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"cuda.{i}"] = cuda_state
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    meta = {"python": [version, list(internal), gauss],
            "numpy": [kind, keys.tolist(), int(pos), int(has_gauss), float(cached)]}
    return tensors, meta


def add_rank_rng(tensors: dict[str, dict[str, torch.Tensor]], state: dict[str, Any],
                 ranks: list[tuple[dict[str, torch.Tensor], dict[str, Any]]]) -> None:
    """Each torchrun rank's RNG streams into rank 0's checkpoint: a resumed DDP run draws every rank's dropout
    masks as the uninterrupted one would."""
    for rank, (rank_tensors, _) in enumerate(ranks):
        tensors["rng"].update({f"rank{rank}.{k}": v for k, v in rank_tensors.items()})
    state["rng_ranks"] = [meta for _, meta in ranks]


def restore_rank_rng(checkpoint: Any, dist: Any) -> None:
    """This rank's own RNG streams from a DDP checkpoint (after `restore`, which put back rank 0's)."""
    metas = checkpoint.state.get("rng_ranks")
    if not dist.active or not metas or dist.rank >= len(metas):
        return
    prefix = f"rank{dist.rank}."
    tensors = {k[len(prefix):]: v for k, v in checkpoint.tensors("rng").items() if k.startswith(prefix)}
    load_rng_state(tensors, metas[dist.rank])


def load_rng_state(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    torch.set_rng_state(tensors["torch"])
    cuda = [tensors[k] for k in sorted((k for k in tensors if k.startswith("cuda.")), key=lambda k: int(k[5:]))]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)
    version, internal, gauss = meta["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = meta["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
