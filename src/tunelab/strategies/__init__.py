"""Strategies: which parameters train, when, and at what learning rate; compiled into Plans."""

from tunelab.strategies.plan import Plan, apply_trainable
from tunelab.strategies.registry import compile_strategy, strategy_names

__all__ = ["Plan", "apply_trainable", "compile_strategy", "strategy_names"]
