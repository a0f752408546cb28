"""BitFit (Ben Zaken et al. 2022): train only the bias terms of the base model, plus the head.

Nothing is inserted; the method declares the existing parameters registered under the attribute name
`bias` of their module (an attribute name, not a substring of the full name). Saved in tunelab's format:
biases + head in one safetensors file, loaded onto the same base.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tunelab.config.schema import StrategyConfig
from tunelab.errors import ConfigError
from tunelab.strategies.peft.base import PeftSection, Adaptation, PeftMethod, blocks_allowed, head_names

if TYPE_CHECKING:
    from tunelab.models.task_model import TaskModel

__all__ = ["BitFitSection", "BitFitMethod"]


class BitFitSection(PeftSection):
    """BitFit: only the bias terms train (Ben Zaken et al. 2022), plus the head."""


class BitFitMethod(PeftMethod):
    name = "bitfit"
    title = "BitFit"
    section = "bitfit"
    Section = BitFitSection
    default_lr = 1e-3
    # training biases changes nothing before the first step, so the model starts equal to the base; the
    # trained biases could be copied into the base, but they *are* base parameters: export is a full save
    mergeable = False

    def _apply(self, model: TaskModel, config: StrategyConfig) -> Adaptation:
        heads = set(head_names(model))
        allowed = blocks_allowed(model, config)
        biases = set()
        for path, module in model.network.named_modules(prefix="network"):
            for local, _ in module.named_parameters(recurse=False):
                full = f"{path}.{local}"
                if local == "bias" and full not in heads and allowed(path):
                    biases.add(full)
        if not biases:
            raise ConfigError("strategy: bitfit found no bias parameters in this model; choose lora or ia3")
        return Adaptation(method=self.name, layers={}, params=frozenset(biases))
