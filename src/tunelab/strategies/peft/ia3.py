"""IA3 (Liu et al. 2022): learned per-channel scaling of keys, values and feed-forward activations.

A target's output is multiplied by l (shape (out, 1), peft's layout); a feed-forward target's input is
multiplied by l (shape (1, in)), which scales the activations entering the second FFN projection. l starts
at one, so the model starts equal to the base; scaling folds into the weight (mergeable).
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field

import torch
from torch import nn

from tunelab.config.schema import StrategyConfig
from tunelab.errors import ConfigError
from tunelab.models.task_model import TaskModel
from tunelab.strategies.peft.base import (PeftSection, Adaptation, PeftLayer, PeftMethod, blocks_allowed, head_names, match_name,
                                          replace_module)

__all__ = ["IA3Layer", "IA3Method"]


class IA3Section(PeftSection):
    """IA3: learned per-channel scaling of keys, values and feed-forward activations (Liu et al. 2022), ones-init."""

    target_modules: list[str] = Field(default_factory=lambda: ["key", "value", "output.dense"],
                                      description="Modules whose output (or input, for feedforward_modules) is scaled.")
    feedforward_modules: list[str] = Field(default_factory=lambda: ["output.dense"],
                                           description="Subset of the targets whose input is scaled (feed-forward activations).")


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


class IA3Method(PeftMethod):
    name = "ia3"
    title = "IA3"
    section = "ia3"
    Section = IA3Section
    default_lr = 3e-3
    peft_type = "IA3"
    mergeable = True

    def _apply(self, model: TaskModel, config: StrategyConfig) -> Adaptation:
        s = self.settings(config)
        unknown = [f for f in s.feedforward_modules if f not in s.target_modules]
        if unknown:
            raise ConfigError(f"strategy.ia3.feedforward_modules: {unknown} are not in target_modules; "
                              "feed-forward modules must be a subset of the targets (as in peft)")
        heads = {n.rsplit(".", 1)[0] for n in head_names(model)}
        allowed = blocks_allowed(model, config)
        layers: dict[str, PeftLayer] = {}
        feedforward: list[str] = []
        for path, module in list(model.network.named_modules(prefix="network")):
            relative = path[len("network."):]
            if type(module) is not nn.Linear or path in heads or not allowed(path) or not match_name(relative, s.target_modules):
                continue
            is_ff = match_name(relative, s.feedforward_modules)
            layers[path] = IA3Layer(module, feedforward=is_ff)
            feedforward += [path] if is_ff else []
        if not layers:
            raise ConfigError(f"strategy.ia3.target_modules: {s.target_modules} match no Linear module of the base model; "
                              "names look like encoder.layer.0.attention.self.key")
        for path, layer in layers.items():
            replace_module(model, path, layer)
        params = frozenset(f"{p}.ia3_l" for p in layers)
        return Adaptation(method=self.name, layers=layers, params=params, info={"targets": list(layers), "feedforward": feedforward})

    def peft_config(self, model: TaskModel, config: StrategyConfig, adaptation: Adaptation) -> dict[str, Any]:
        strip = len("network.")
        return {"target_modules": [p[strip:] for p in adaptation.info["targets"]],
                "feedforward_modules": [p[strip:] for p in adaptation.info["feedforward"]],
                "fan_in_fan_out": False, "init_ia3_weights": True}
