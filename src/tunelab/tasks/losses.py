"""The loss modules of the tasks whose loss is not a plain torch loss: kept apart from the task files so that
importing a task (which validating a config does) imports no torch; a task's `loss_fn` imports them.
"""

from __future__ import annotations

import torch
from torch import nn

from tunelab.data.encoding import IGNORE_INDEX

__all__ = ["SqueezedLoss", "TokenLoss"]


class SqueezedLoss(nn.Module):
    """Regression heads emit `(B, 1)`; targets are `(B,)`."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return self.inner(logits.squeeze(-1).float(), targets)


class TokenLoss(nn.Module):
    """Cross-entropy over the labelled tokens of `(B, T, C)` logits and `(B, T)` targets (-100 skipped)."""

    def __init__(self, weight: torch.Tensor | None) -> None:
        super().__init__()
        self.inner = nn.CrossEntropyLoss(weight=weight, ignore_index=IGNORE_INDEX)

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return self.inner(logits.float().reshape(-1, logits.shape[-1]), targets.reshape(-1))
