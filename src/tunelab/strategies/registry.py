"""The one list of strategies. Config validation and the CLI derive their choices from it; PEFT methods
register here too, one entry each."""

from __future__ import annotations

from typing import Callable

from tunelab.config.schema import OptimConfig, StrategyConfig
from tunelab.errors import ConfigError
from tunelab.models.task_model import TaskModel
from tunelab.strategies.depth import compile_full, compile_gradual, compile_head, compile_partial
from tunelab.strategies.plan import Plan

__all__ = ["STRATEGIES", "strategy_names", "compile_strategy"]

Compiler = Callable[[StrategyConfig, TaskModel, OptimConfig, int], Plan]

STRATEGIES: dict[str, Compiler] = {
    "full": compile_full,
    "head": compile_head,
    "partial": compile_partial,
    "gradual": compile_gradual,
}


def strategy_names() -> list[str]:
    return list(STRATEGIES)


def compile_strategy(config: StrategyConfig, model: TaskModel, optim: OptimConfig, epochs: int) -> Plan:
    """Strategy (data) + model -> Plan (names, param groups, events)."""
    try:
        compiler = STRATEGIES[config.name]
    except KeyError:
        raise ConfigError(f"strategy.name: unknown strategy {config.name!r}; choose one of: {', '.join(STRATEGIES)}") from None
    return compiler(config, model, optim, epochs)
