"""The bottleneck adapter layer of Houlsby and Pfeiffer adapters: h -> h + up(act(down(h))) on the output of
a Linear projection, `up` zero-initialised. The methods are in `adapters.py`.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from tunelab.errors import ConfigError
from tunelab.strategies.peft.layer import PeftLayer

__all__ = ["BottleneckAdapter", "ACTIVATIONS"]

ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh}   # AdapterSection.activation's choices


class BottleneckAdapter(PeftLayer):
    declared: ClassVar[tuple[str, ...]] = ("down.weight", "down.bias", "up.weight", "up.bias")

    def __init__(self, base: nn.Linear, bottleneck: int, activation: str, residual: bool) -> None:
        super().__init__()
        if type(base) is not nn.Linear:
            raise ConfigError(f"strategy.adapter: an adapter wraps a Linear output projection, not {type(base).__name__}")
        width = base.out_features
        self.base_layer, self.residual = base, residual
        self.down = nn.Linear(width, bottleneck)
        self.act = ACTIVATIONS[activation]()
        self.up = nn.Linear(bottleneck, width)
        nn.init.normal_(self.down.weight, std=1e-2)
        nn.init.zeros_(self.down.bias)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)
        self.to(base.weight.device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden = self.base_layer(x)                      # (..., H)
        update = self.up(self.act(self.down(hidden)))    # (..., H) through a (..., b) bottleneck
        return hidden + update if self.residual else update
