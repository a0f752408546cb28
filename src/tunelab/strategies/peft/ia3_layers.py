"""IA3's inserted layer: a learned per-channel scale on a Linear layer's output (or, for a feed-forward
target, its input), ones-initialised and foldable into the weight. The method is in `ia3.py`.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from tunelab.errors import ConfigError
from tunelab.strategies.peft.layer import PeftLayer

__all__ = ["IA3Layer"]


class IA3Layer(PeftLayer):
    declared: ClassVar[tuple[str, ...]] = ("ia3_l",)
    mergeable: ClassVar[bool] = True

    def __init__(self, base: nn.Linear, feedforward: bool) -> None:
        super().__init__()
        if type(base) is not nn.Linear:
            raise ConfigError(f"strategy.ia3: IA3 adapts Linear layers, not {type(base).__name__}; exclude this module")
        self.base_layer, self.feedforward = base, feedforward
        shape = (1, base.in_features) if feedforward else (base.out_features, 1)
        self.ia3_l = nn.Parameter(torch.ones(shape, device=base.weight.device))
        self.register_buffer("_merged_l", torch.zeros(0), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.merged:
            return self.base_layer(x)
        if self.feedforward:
            return self.base_layer(x * self.ia3_l.flatten())
        return self.base_layer(x) * self.ia3_l.flatten()

    @torch.no_grad()
    def merge(self) -> None:
        if self.merged:
            return
        self._merged_l = self.ia3_l.detach().clone()  # unmerge divides by exactly what was multiplied
        self.base_layer.weight.mul_(self._merged_l)
        if not self.feedforward and self.base_layer.bias is not None:
            self.base_layer.bias.mul_(self._merged_l.flatten())
        self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        if not self.merged:
            return
        self.base_layer.weight.div_(self._merged_l)
        if not self.feedforward and self.base_layer.bias is not None:
            self.base_layer.bias.div_(self._merged_l.flatten())
        self.merged = False
