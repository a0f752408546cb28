"""Depth-based strategies: full, head (feature extraction), partial freezing and gradual unfreezing.

All four are data over the LayerStack: which depth groups train, from which epoch, at what LR.
Layer-wise LR decay and the head LR multiplier combine with every one of them.

The registry imports this module to list the strategies, and validation imports the registry, so the
models package (torch, transformers) is imported inside the compile functions, never at import time.
"""

from __future__ import annotations

import fnmatch
from typing import TYPE_CHECKING

from tunelab.config.schema import OptimConfig, StrategyConfig
from tunelab.errors import ConfigError
from tunelab.strategies.plan import Plan, UnfreezeEvent, build_param_groups

if TYPE_CHECKING:
    from tunelab.models.task_model import TaskModel

__all__ = ["compile_full", "compile_head", "compile_partial", "compile_gradual", "depth_lr_multipliers"]


def depth_lr_multipliers(model: TaskModel, config: StrategyConfig) -> dict[str, float]:
    """LR multiplier per parameter: head x head_lr_multiplier, block i x decay^(N-i), embeddings x decay^(N+1)."""
    from tunelab.models.layerstack import EMBEDDING_GROUP

    stack = model.layer_stack
    n = stack.num_blocks
    out: dict[str, float] = {}
    for name, _ in model.named_parameters():
        group = stack.group_of(name)
        if group == stack.head_group:
            out[name] = config.head_lr_multiplier
        elif group == EMBEDDING_GROUP:
            out[name] = config.layerwise_lr_decay ** (n + 1)
        else:
            out[name] = config.layerwise_lr_decay ** (n - group)
    return out


def _plan(name: str, model: TaskModel, config: StrategyConfig, optim: OptimConfig, trainable: set[str],
          events: list[UnfreezeEvent] | None = None) -> Plan:
    events = events or []
    ever = frozenset(trainable).union(*(e.names for e in events)) if events else frozenset(trainable)
    multipliers = depth_lr_multipliers(model, config)
    lr_of = {n: optim.lr * multipliers[n] for n in ever}
    groups = build_param_groups(model, ever, lr_of, optim.weight_decay)
    return Plan(strategy=name, trainable=frozenset(trainable), groups=groups, events=events)


def _names_by_group(model: TaskModel) -> dict[int, list[str]]:
    return model.layer_stack.groups([n for n, _ in model.named_parameters()])


def compile_full(config: StrategyConfig, model: TaskModel, optim: OptimConfig, epochs: int) -> Plan:
    return _plan("full", model, config, optim, {n for n, _ in model.named_parameters()})


def compile_head(config: StrategyConfig, model: TaskModel, optim: OptimConfig, epochs: int) -> Plan:
    head = _names_by_group(model).get(model.layer_stack.head_group, [])
    return _plan("head", model, config, optim, set(head))


def compile_partial(config: StrategyConfig, model: TaskModel, optim: OptimConfig, epochs: int) -> Plan:
    from tunelab.models.layerstack import EMBEDDING_GROUP

    stack = model.layer_stack
    k = config.freeze_blocks or 0
    if k > stack.num_blocks:
        raise ConfigError(f"strategy.freeze_blocks: the model has {stack.num_blocks} blocks, got {k}; "
                          f"use 0..{stack.num_blocks} ({stack.num_blocks} trains only the head)")
    trainable = set()
    for name, _ in model.named_parameters():
        group = stack.group_of(name)
        frozen = (group == EMBEDDING_GROUP and (config.freeze_embeddings or k > 0)) or (0 <= group < k)
        if config.freeze_patterns and any(fnmatch.fnmatchcase(name, p) for p in config.freeze_patterns):
            frozen = True
        if not frozen:
            trainable.add(name)
    if config.freeze_patterns and len(trainable) == sum(1 for _ in model.parameters()) and k == 0:
        raise ConfigError(f"strategy.freeze_patterns: {config.freeze_patterns} match no parameter name; "
                          "names look like network.bert.encoder.layer.0.attention.self.query.weight")
    if not trainable:
        raise ConfigError("strategy: this partial freezing leaves nothing to train; freeze fewer blocks or patterns")
    return _plan("partial", model, config, optim, trainable)


def compile_gradual(config: StrategyConfig, model: TaskModel, optim: OptimConfig, epochs: int) -> Plan:
    """ULMFiT: train the head first, then unfreeze one more block (top-down) every `unfreeze_every` epochs;
    the embeddings unfreeze last."""
    from tunelab.models.layerstack import EMBEDDING_GROUP

    by_group = _names_by_group(model)
    stack = model.layer_stack
    events: list[UnfreezeEvent] = []
    order = list(range(stack.num_blocks - 1, -1, -1)) + [EMBEDDING_GROUP]
    for step, group in enumerate(order, start=1):
        epoch = step * config.unfreeze_every
        if epoch >= epochs:
            break
        what = "embeddings" if group == EMBEDDING_GROUP else f"block {group}"
        events.append(UnfreezeEvent(epoch=epoch, names=frozenset(by_group.get(group, [])), description=f"unfreeze {what}"))
    return _plan("gradual", model, config, optim, set(by_group.get(stack.head_group, [])), events)
