"""tunelab's own heads: pool the last hidden states, then a linear layer or a small MLP."""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

__all__ = ["PoolingHead"]


class PoolingHead(nn.Module):
    """`(B, T, H)` hidden states + `(B, T)` mask -> `(B, num_outputs)` logits; with `pooling="none"` (token
    tasks) every position is projected: `(B, T, num_outputs)`."""

    def __init__(self, hidden: int, num_outputs: int, *, kind: Literal["linear", "mlp"],
                 pooling: Literal["cls", "mean", "none"],
                 dropout: float, mlp_hidden: int) -> None:
        super().__init__()
        self.pooling = pooling
        self.dropout = nn.Dropout(dropout)
        if kind == "mlp":
            self.proj: nn.Module = nn.Sequential(nn.Linear(hidden, mlp_hidden), nn.GELU(), nn.Dropout(dropout),
                                                 nn.Linear(mlp_hidden, num_outputs))
        else:
            self.proj = nn.Linear(hidden, num_outputs)

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        if self.pooling == "none":
            pooled = hidden_states  # (B, T, H): one output per token
        elif self.pooling == "cls":
            pooled = hidden_states[:, 0]
        else:
            mask = attention_mask.unsqueeze(-1).to(hidden_states.dtype)  # (B, T, 1)
            pooled = (hidden_states * mask).sum(1) / mask.sum(1).clamp(min=1.0)
        return self.proj(self.dropout(pooled))
