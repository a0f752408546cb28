"""One training step and one optimizer step, small and free of trainer state (evaluation passes are
inference's: tunelab/inference/predict.py)."""

from __future__ import annotations

import contextlib
from typing import Optional, Sequence

import torch
from torch import nn

from tunelab.data.encoding import Batch
from tunelab.strategies.plan import LossTerm, OutputTerm

__all__ = ["train_step", "optimizer_step"]


def train_step(model: nn.Module, batch: Batch, loss_fn: nn.Module, *, scale: float,
               autocast: contextlib.AbstractContextManager, loss_terms: Sequence[LossTerm] = (),
               output_terms: Sequence[OutputTerm] = (), task_weight: float = 1.0,
               forward: Optional[nn.Module] = None) -> float:
    """Forward, loss (`task_weight` times the task's, plus the plan's terms), backward (gradients accumulate);
    returns the unscaled loss of this micro-batch. `forward`: what runs the batch (`model` under DDP; default
    `model`); the plan's loss terms read `model` itself, whose parameter names they know, its output terms the
    logits of this forward pass."""
    with autocast:
        args, kwargs = batch.model_inputs()
        logits = (forward or model)(*args, **kwargs)  # (B, C)
    logits = logits.float()
    if batch.head is not None:  # a multi-task batch: its task's loss (loss_fn holds one per head)
        loss_fn = loss_fn[batch.head]  # type: ignore[index]
    loss = loss_fn(logits, batch.targets) if task_weight else logits.new_zeros(())  # alpha 1: labels unread
    if task_weight not in (0.0, 1.0):
        loss = task_weight * loss
    for term in output_terms:
        loss = loss + term.weight * term.compute(logits, batch).float()
    for term in loss_terms:
        loss = loss + term.weight * term.compute(model, batch).float()
    (loss * scale).backward()
    return float(loss.detach())


def optimizer_step(optimizer: torch.optim.Optimizer, scheduler: torch.optim.lr_scheduler.LRScheduler,
                   params: list[nn.Parameter], max_grad_norm: Optional[float]) -> float:
    """Clip (if asked), step, advance the schedule; returns the gradient norm before clipping, which callbacks
    report (tracking) and which costs one pass over the gradients when clipping is off."""
    grads = [p for p in params if p.grad is not None]
    if max_grad_norm is not None:
        norm = torch.nn.utils.clip_grad_norm_(grads, max_grad_norm)
    else:
        norm = torch.nn.utils.get_total_norm([p.grad for p in grads]) if grads else torch.zeros(())
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    return float(norm)
