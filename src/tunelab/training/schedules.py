"""Learning-rate schedules as multipliers of each param group's base LR (so layer-wise LRs keep their ratios)."""

from __future__ import annotations

import math

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

from tunelab.config.schema import ScheduleConfig

__all__ = ["build_scheduler", "warmup_steps_for", "lr_multiplier"]


def warmup_steps_for(config: ScheduleConfig, total_steps: int) -> int:
    if config.warmup_steps is not None:
        return min(config.warmup_steps, total_steps)
    ratio = config.warmup_ratio if config.warmup_ratio is not None else (0.1 if config.name == "slanted_triangular" else 0.0)
    return int(round(ratio * total_steps))


def lr_multiplier(config: ScheduleConfig, step: int, total_steps: int) -> float:
    """Multiplier at optimizer step `step` (0-based). Slanted triangular is ULMFiT's: a short linear rise to
    the peak over the warmup share, then a long linear fall to 1/stlr_ratio of it."""
    total = max(total_steps, 1)
    warmup = warmup_steps_for(config, total)
    if config.name == "slanted_triangular":
        cut = max(warmup, 1)
        p = step / cut if step < cut else 1 - (step - cut) / max(total - 1 - cut, 1)
        return (1 + max(p, 0.0) * (config.stlr_ratio - 1)) / config.stlr_ratio
    if step < warmup:
        return (step + 1) / (warmup + 1)
    if config.name == "constant":
        return 1.0
    progress = (step - warmup) / max(total - warmup, 1)
    if config.name == "linear":
        return max(0.0, 1.0 - progress)
    return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))  # cosine


def build_scheduler(optimizer: Optimizer, config: ScheduleConfig, total_steps: int) -> LambdaLR:
    return LambdaLR(optimizer, lambda step: lr_multiplier(config, step, total_steps))
