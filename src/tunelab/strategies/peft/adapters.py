"""Bottleneck adapters: Houlsby et al. 2019 (after attention and after the feed-forward block) and
Pfeiffer et al. 2021 (after the feed-forward block only).

An adapter wraps the output projection of the sub-block, before its dropout, residual and LayerNorm:
h -> h + up(act(down(h))). `up` starts at zero, so the adapted model starts equal to the base. Targets
are named relative to each block of the LayerStack, so the same names work for every depth. The layer is
in `adapter_layers.py` (torch), imported when a model is adapted.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, Literal, Optional

from pydantic import Field

from tunelab.config.schema import StrategyConfig
from tunelab.errors import ConfigError
from tunelab.strategies.peft.base import PeftSection, Adaptation, PeftMethod, replace_module

if TYPE_CHECKING:
    from tunelab.models.task_model import TaskModel
    from tunelab.strategies.peft.layer import PeftLayer

__all__ = ["AdapterSection", "HoulsbyMethod", "PfeifferMethod"]


class AdapterSection(PeftSection):
    """Bottleneck adapters: h + up(act(down(h))), `up` zero-initialised so the model starts equal to the base.

    Targets are block-relative module names (inside each block of the LayerStack): the output projection of
    attention and of the feed-forward block, before their residual connection and LayerNorm.
    """

    bottleneck: Optional[int] = Field(None, ge=1, description="Bottleneck width; default hidden / reduction_factor.")
    reduction_factor: int = Field(16, ge=1, description="Bottleneck = hidden size / this, when bottleneck is not given.")
    activation: Literal["relu", "gelu", "tanh"] = "relu"
    residual: bool = Field(True, description="Add the adapter's input back (the identity path that makes zero-init exact).")
    attention_module: str = Field("attention.output.dense", description="houlsby: block-relative name of the attention output projection.")
    ffn_module: str = Field("output.dense", description="Block-relative name of the feed-forward output projection.")
    foreign_names: ClassVar[dict[str, str]] = {  # AdapterHub's BnConfig and common spellings of the width
        "non_linearity": "activation", "adapter_size": "bottleneck", "bottleneck_size": "bottleneck"}


class _AdapterMethod(PeftMethod):
    section = "adapter"
    Section = AdapterSection
    default_lr = 5e-4
    places: ClassVar[tuple[str, ...]]

    def _apply(self, model: TaskModel, config: StrategyConfig) -> Adaptation:
        from torch import nn

        from tunelab.strategies.peft.adapter_layers import BottleneckAdapter

        s = self.settings(config)
        stack = model.layer_stack
        first = config.freeze_blocks or 0
        if first > stack.num_blocks:
            raise ConfigError(f"strategy.freeze_blocks: the model has {stack.num_blocks} blocks, got {first}")
        names = [getattr(s, place) for place in self.places]
        layers: dict[str, PeftLayer] = {}
        for index in range(first, stack.num_blocks):
            for name, place in zip(names, self.places):
                path = f"{stack.blocks_path}.{index}.{name}"
                try:
                    module = model.get_submodule(path)
                except AttributeError:
                    raise ConfigError(f"strategy.adapter.{place}: block {index} has no module {name!r}; give the "
                                      f"block-relative name of the projection (e.g. output.dense for BERT)") from None
                width = module.out_features if isinstance(module, nn.Linear) else 0
                layers[path] = BottleneckAdapter(module, s.bottleneck or max(1, width // s.reduction_factor),
                                                 s.activation, s.residual)
        for path, layer in layers.items():
            replace_module(model, path, layer)
        params = frozenset(f"{p}.{n}" for p, layer in layers.items() for n in layer.declared_names())
        return Adaptation(method=self.name, layers=layers, params=params)


class HoulsbyMethod(_AdapterMethod):
    name = "houlsby"
    title = "Houlsby adapter"
    places = ("attention_module", "ffn_module")


class PfeifferMethod(_AdapterMethod):
    name = "pfeiffer"
    title = "Pfeiffer adapter"
    places = ("ffn_module",)
