"""Bad steps: a step whose loss or gradients are NaN/Inf is not applied, and a streak of them stops the run.
(Not the forgetting guards, which are strategies: strategies/guards/.)

A single bad batch (one overflow in bf16, one degenerate example) should not poison the weights or the
optimizer moments, so the step is dropped: no parameter or Adam moment changes. The LR schedule still
advances and the step still counts, so the schedule stays tied to the data position and a resumed run
sees the same sequence. A streak of `max_bad_steps` means the run itself is broken (LR too high, precision),
and carrying on would only burn time: the run stops, naming the step and the likely causes.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
from torch import nn

from tunelab.config.schema import RunConfig
from tunelab.errors import TrainingError

__all__ = ["BadStepGuard", "step_is_finite", "skip_step"]


def step_is_finite(losses: list[float], params: list[nn.Parameter]) -> bool:
    """True when every micro-batch loss and the total gradient norm are finite."""
    if not all(math.isfinite(x) for x in losses):
        return False
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return True
    return bool(torch.isfinite(torch.nn.utils.get_total_norm(grads)))


def skip_step(optimizer: torch.optim.Optimizer, scheduler: torch.optim.lr_scheduler.LRScheduler) -> None:
    """Drop the accumulated gradients without touching weights or optimizer moments; the schedule advances."""
    optimizer.zero_grad(set_to_none=True)
    scheduler.step()


class BadStepGuard:
    """Counts consecutive bad steps; raises :class:`TrainingError` when the streak reaches `max_bad_steps`."""

    def __init__(self, config: RunConfig) -> None:
        self.config = config
        self.consecutive = 0
        self.first_bad: Optional[int] = None

    def record(self, step: int, epoch: int, good: bool, last_checkpoint: Optional[str]) -> None:
        """`step` is 1-based (the step just done)."""
        if good:
            self.consecutive, self.first_bad = 0, None
            return
        self.consecutive += 1
        self.first_bad = self.first_bad or step
        if self.consecutive >= self.config.train.max_bad_steps:
            raise TrainingError(self._message(step, epoch, last_checkpoint))

    def _message(self, step: int, epoch: int, last_checkpoint: Optional[str]) -> str:
        optim, train = self.config.optim, self.config.train
        causes = [f"the learning rate is too high (optim.lr={optim.lr:g}; try {optim.lr / 10:g})"]
        if train.precision == "bf16":
            causes.append("bf16 overflow (train.precision=bf16; try fp32)")
        else:
            causes.append("reduced precision (if you changed train.precision, go back to fp32)")
        if train.max_grad_norm is None:
            causes.append("no gradient clipping (set train.max_grad_norm, e.g. 1.0)")
        causes.append("extreme or non-finite inputs/targets in the data")
        kept = (f"the last good checkpoint is kept at {last_checkpoint}" if last_checkpoint
                else "no checkpoint had been written yet")
        return (f"training stopped at step {step} (epoch {epoch + 1}): the loss or gradients were NaN/Inf for "
                f"{self.consecutive} consecutive steps ({self.first_bad}-{step}, train.max_bad_steps="
                f"{train.max_bad_steps}); none of them was applied. Likely causes: {'; '.join(causes)}. "
                f"{kept[0].upper()}{kept[1:]}; fix the config and start the run again (with --overwrite to discard "
                f"the unfinished one).")
