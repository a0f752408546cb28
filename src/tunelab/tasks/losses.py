"""The loss modules of the tasks whose loss is not a plain torch loss: kept apart from the task files so that
importing a task (which validating a config does) imports no torch; a task's `loss_fn` imports them.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from tunelab.data.encoding import IGNORE_INDEX

__all__ = ["SqueezedLoss", "TokenLoss", "FocalLoss", "SigmoidFocalLoss", "DPOLoss", "implicit_rewards"]


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


class FocalLoss(nn.Module):
    """Softmax focal loss (Lin et al. 2017): -w_y (1 - p_y)^gamma log p_y, averaged as CrossEntropyLoss(weight)
    averages (divided by the targets' weights), so gamma = 0 is exactly the weighted cross-entropy."""

    def __init__(self, gamma: float, weight: torch.Tensor | None = None) -> None:
        super().__init__()
        self.gamma = gamma
        self.register_buffer("weight", weight)

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        log_p = torch.log_softmax(logits.float(), dim=-1).gather(1, targets[:, None]).squeeze(1)
        loss = -((1 - log_p.exp()) ** self.gamma) * log_p
        if self.weight is None:
            return loss.mean()
        w = self.weight[targets]
        return (w * loss).sum() / w.sum()


class SigmoidFocalLoss(nn.Module):
    """Per-class sigmoid focal loss for multi-label targets: BCE (with pos_weight) times (1 - p_t)^gamma, and
    alpha on positives / 1 - alpha on negatives when given (RetinaNet's form); the mean over every decision."""

    def __init__(self, gamma: float, alpha: float | None = None, pos_weight: torch.Tensor | None = None) -> None:
        super().__init__()
        self.gamma, self.alpha = gamma, alpha
        self.register_buffer("pos_weight", pos_weight)

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        x = logits.float()
        bce = nn.functional.binary_cross_entropy_with_logits(x, targets, pos_weight=self.pos_weight, reduction="none")
        p = torch.sigmoid(x)
        p_t = p * targets + (1 - p) * (1 - targets)
        loss = bce * (1 - p_t) ** self.gamma
        if self.alpha is not None:
            loss = loss * (self.alpha * targets + (1 - self.alpha) * (1 - targets))
        return loss.mean()


def implicit_rewards(logps: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """`(B, 2)` DPO's implicit rewards of the chosen and the rejected reply, beta * (log pi - log ref), from the
    model's `(B, 2)` summed log-probabilities and the `(B, 3)` targets (the reference's two, then beta)."""
    return targets[:, 2:3] * (logps.float() - targets[:, :2])


class DPOLoss(nn.Module):
    """Direct Preference Optimisation (Rafailov et al. 2023): -log sigmoid(r_chosen - r_rejected) of the implicit
    rewards, the mean over pairs; log 2 while the model equals the reference. With label smoothing e (conservative
    DPO: a share e of the pairs assumed the wrong way round) -(1 - e) log sigmoid(z) - e log sigmoid(-z)."""

    def __init__(self, label_smoothing: float = 0.0) -> None:
        super().__init__()
        self.label_smoothing = label_smoothing

    def forward(self, logps: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        rewards = implicit_rewards(logps, targets)
        z = rewards[:, 0] - rewards[:, 1]                                   # (B,)
        e = self.label_smoothing
        loss = -F.logsigmoid(z).mean()
        return loss if e == 0 else (1 - e) * loss - e * F.logsigmoid(-z).mean()
