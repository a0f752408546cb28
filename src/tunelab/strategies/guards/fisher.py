"""The diagonal Fisher information for EWC, estimated from per-example squared gradients of the task loss
(the empirical Fisher) at the weights a run starts from. Eval mode and no sampling: estimating it draws no
random number, so the run then trains exactly as it would have."""

from __future__ import annotations

from typing import Iterable

import torch
from torch import nn

from tunelab.data.encoding import Batch

__all__ = ["diagonal_fisher"]


def diagonal_fisher(model: nn.Module, names: list[str], batches: Iterable[Batch], loss_fn: nn.Module,
                    device: torch.device) -> dict[str, torch.Tensor]:
    """Mean over examples of (d loss / d theta)^2 for the parameters `names` (fp32, on the CPU). Pass batches
    of one example each: the square of a batch mean is not the mean of the squares. Gradients and
    `requires_grad` are left as they were found (no gradient stays behind for the optimizer to see)."""
    params = dict(model.named_parameters())
    trainable = {n: p.requires_grad for n, p in params.items()}
    wanted = set(names)
    for name, param in params.items():
        param.requires_grad_(name in wanted)
    sums = {n: torch.zeros_like(params[n], dtype=torch.float32) for n in names}
    count = 0
    model.to(device).eval()
    try:
        for batch in batches:
            batch = batch.to(device)
            args, kwargs = batch.model_inputs()
            loss = loss_fn(model(*args, **kwargs).float(), batch.targets)
            grads = torch.autograd.grad(loss, [params[n] for n in names], allow_unused=True)
            for name, grad in zip(names, grads):
                if grad is not None:
                    sums[name] += grad.detach().float().pow(2)
            count += len(batch)
    finally:
        for name, param in params.items():
            param.requires_grad_(trainable[name])
            param.grad = None
    return {n: (s / max(count, 1)).cpu() for n, s in sums.items()}
