"""One training step and one evaluation pass, small and free of trainer state."""

from __future__ import annotations

import contextlib
from typing import Callable, Iterable, Optional, Sequence

import torch
from torch import nn

from tunelab.data.encoding import Batch
from tunelab.strategies.plan import LossTerm
from tunelab.tasks.base import Outputs
from tunelab.training.accel import resolve_precision

__all__ = ["train_step", "optimizer_step", "predict_logits", "autocast_for"]


def autocast_for(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """bf16 autocast on CPU or CUDA when asked; fp32 otherwise. run.py resolves `auto` and unsupported
    bf16 beforehand (training/accel.py), so `auto` here is only a caller that skipped that: it follows
    the same rule."""
    if precision == "auto":
        precision = resolve_precision(device, "auto")[0]
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def train_step(model: nn.Module, batch: Batch, loss_fn: nn.Module, *, scale: float,
               autocast: contextlib.AbstractContextManager, loss_terms: Sequence[LossTerm] = ()) -> float:
    """Forward, loss (the task's plus the plan's terms), backward (gradients accumulate); returns the
    unscaled loss of this micro-batch."""
    with autocast:
        args, kwargs = batch.model_inputs()
        logits = model(*args, **kwargs)  # (B, C)
    loss = loss_fn(logits.float(), batch.targets)
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


@torch.no_grad()
def predict_logits(model: nn.Module, batches: Iterable[Batch], n: int, device: torch.device,
                   precision: str = "fp32", loss_fn: Optional[nn.Module] = None,
                   reduce: Optional[Callable[[torch.Tensor, Batch], torch.Tensor]] = None) -> tuple[Outputs, float]:
    """Outputs for a whole split in the split's original order, and the mean loss over its batches (NaN
    without `loss_fn` or targets); the model is left in eval mode.

    Per-example outputs `(B, C)` are gathered into one `(N, C)` tensor; per-token outputs `(B, T, C)` into
    a list of `(T_i, C)` tensors with the padding cut off (their lengths differ between batches). A task whose
    outputs are too large to keep (a causal LM's vocabulary-sized logits) passes `reduce`, which turns each
    batch's outputs into `(B, C)` per-example values after the loss is taken.
    """
    model.eval()
    rows: list[Optional[torch.Tensor]] = [None] * n
    stacked: Optional[torch.Tensor] = None
    loss_sum, loss_weight = 0.0, 0
    for batch in batches:
        batch = batch.to(device)
        with autocast_for(device, precision):
            args, kwargs = batch.model_inputs()
            logits = model(*args, **kwargs).float()
        if loss_fn is not None and batch.targets is not None:
            loss_sum += float(loss_fn(logits, batch.targets)) * len(batch)
            loss_weight += len(batch)
        if reduce is not None:
            logits = reduce(logits, batch)  # (B, C)
        logits = logits.cpu()
        if logits.dim() == 2:
            stacked = torch.empty((n, logits.shape[-1])) if stacked is None else stacked
            stacked[batch.indices] = logits
        else:
            lengths = batch.attention_mask.sum(1).tolist()
            for row, i, length in zip(logits, batch.indices.tolist(), lengths):
                rows[i] = row[:length]  # (T_i, C)
    loss = loss_sum / loss_weight if loss_weight else float("nan")
    if stacked is not None or n == 0:
        return (stacked if stacked is not None else torch.empty((0, 0))), loss
    return [r if r is not None else torch.empty(0) for r in rows], loss
