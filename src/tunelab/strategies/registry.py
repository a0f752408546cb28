"""The one list of strategies. Config validation and the CLI derive their choices from it; PEFT methods
register here too, one entry each."""

from __future__ import annotations

from typing import Callable, Optional

from tunelab.config.schema import OptimConfig, StrategyConfig
from tunelab.errors import ConfigError
from tunelab.models.task_model import TaskModel
from tunelab.strategies.depth import compile_full, compile_gradual, compile_head, compile_partial
from tunelab.strategies.peft.adapters import HoulsbyMethod, PfeifferMethod
from tunelab.strategies.peft.base import PeftMethod
from tunelab.strategies.peft.bitfit import BitFitMethod
from tunelab.strategies.peft.ia3 import IA3Method
from tunelab.strategies.peft.lora import LoraMethod
from tunelab.strategies.peft.prefix import PrefixTuningMethod
from tunelab.strategies.peft.prompt import PromptTuningMethod
from tunelab.strategies.plan import Plan

__all__ = ["STRATEGIES", "PEFT_METHODS", "strategy_names", "compile_strategy", "peft_method"]

Compiler = Callable[[StrategyConfig, TaskModel, OptimConfig, int], Plan]

STRATEGIES: dict[str, Compiler] = {
    "full": compile_full,
    "head": compile_head,
    "partial": compile_partial,
    "gradual": compile_gradual,
}

# Parameter-efficient methods: one instance each; their compile step is their strategy entry.
PEFT_METHODS: dict[str, PeftMethod] = {m.name: m for m in (LoraMethod(), IA3Method(), BitFitMethod(), HoulsbyMethod(),
                                                          PfeifferMethod(), PromptTuningMethod(),
                                                          PrefixTuningMethod())}
STRATEGIES.update({name: method.compile for name, method in PEFT_METHODS.items()})


def peft_method(name: str) -> Optional[PeftMethod]:
    """The PEFT method behind strategy `name`, or None for the depth strategies."""
    return PEFT_METHODS.get(name)


def strategy_names() -> list[str]:
    return list(STRATEGIES)


def compile_strategy(config: StrategyConfig, model: TaskModel, optim: OptimConfig, epochs: int) -> Plan:
    """Strategy (data) + model -> Plan (names, param groups, events)."""
    try:
        compiler = STRATEGIES[config.name]
    except KeyError:
        raise ConfigError(f"strategy.name: unknown strategy {config.name!r}; choose one of: {', '.join(STRATEGIES)}") from None
    return compiler(config, model, optim, epochs)
