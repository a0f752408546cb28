"""IA3 (Liu et al. 2022): learned per-channel scaling of keys, values and feed-forward activations.

A target's output is multiplied by l (shape (out, 1), peft's layout); a feed-forward target's input is
multiplied by l (shape (1, in)), which scales the activations entering the second FFN projection. l starts
at one, so the model starts equal to the base; scaling folds into the weight (mergeable). The layer is in
`ia3_layers.py` (torch), imported when a model is adapted.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import Field

from tunelab.config.schema import StrategyConfig
from tunelab.errors import ConfigError
from tunelab.strategies.peft.base import (PeftSection, Adaptation, PeftMethod, blocks_allowed, head_names, match_name,
                                          replace_module)

if TYPE_CHECKING:
    from tunelab.models.task_model import TaskModel
    from tunelab.strategies.peft.layer import PeftLayer

__all__ = ["IA3Section", "IA3Method"]


class IA3Section(PeftSection):
    """IA3: learned per-channel scaling of keys, values and feed-forward activations (Liu et al. 2022), ones-init."""

    target_modules: list[str] = Field(default_factory=lambda: ["key", "value", "output.dense"],
                                      description="Modules whose output (or input, for feedforward_modules) is scaled.")
    feedforward_modules: list[str] = Field(default_factory=lambda: ["output.dense"],
                                           description="Subset of the targets whose input is scaled (feed-forward activations).")


class IA3Method(PeftMethod):
    name = "ia3"
    title = "IA3"
    section = "ia3"
    Section = IA3Section
    default_lr = 3e-3
    peft_type = "IA3"
    mergeable = True

    def _apply(self, model: TaskModel, config: StrategyConfig) -> Adaptation:
        from torch import nn

        from tunelab.strategies.peft.ia3_layers import IA3Layer

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
