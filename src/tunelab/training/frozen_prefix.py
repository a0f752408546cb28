"""Which embeddings + blocks `[0, k)` a plan leaves frozen, per epoch, and keeping them deterministic: what
the activation cache may serve (training/cache.py) and what the trainer runs in eval mode."""

from __future__ import annotations

from typing import Optional

from tunelab.models.task_model import TaskModel
from tunelab.strategies.plan import Plan

__all__ = ["frozen_blocks", "prefix_schedule", "eval_frozen_prefix"]


def frozen_blocks(model: TaskModel, trainable: frozenset[str]) -> Optional[int]:
    """k such that the embeddings and blocks `[0, k)` use no trainable parameter; None when the
    embeddings train (nothing below block 0 is fixed).

    Decided by the parameters each module *reaches*, not by names: a trainable module shared into a
    block (a prefix encoder, tied weights) makes that block trainable even though its name is elsewhere."""
    named = dict(model.named_parameters())
    training = {id(named[name]) for name in trainable if name in named}
    stack = model.layer_stack
    for prefix in stack.embedding_prefixes:
        if any(id(p) in training for p in model.get_submodule(prefix.rstrip(".")).parameters()):
            return None
    for index, block in enumerate(model.get_submodule(stack.blocks_path)):
        if any(id(p) in training for p in block.parameters()):
            return index
    return stack.num_blocks


def prefix_schedule(model: TaskModel, plan: Plan, epochs: int) -> list[Optional[int]]:
    """Frozen prefix per epoch. Modules a method inserted outside the block stack (a prompt, say) may
    change what the embeddings feed the blocks, so such plans get no frozen prefix at all."""
    inside = model.layer_stack.blocks_path + "."
    if any(not path.startswith(inside) for path in plan.inserted):
        return [None] * epochs
    return [frozen_blocks(model, plan.trainable_at(epoch)) for epoch in range(epochs)]


def eval_frozen_prefix(model: TaskModel, k: Optional[int]) -> None:
    """Put the frozen embeddings and blocks `[0, k)` in eval mode (no dropout): a frozen prefix is then
    deterministic, which is what makes cached and recomputed training give the same model."""
    if k is None:
        return
    stack = model.layer_stack
    for prefix in stack.embedding_prefixes:
        model.get_submodule(prefix.rstrip(".")).eval()
    blocks = model.get_submodule(stack.blocks_path)
    for index in range(k):
        blocks[index].eval()
