"""Run a model from block k: capture the input of chosen blocks, and later feed it back instead of recomputing.

The activation cache needs two generic operations on any LayerStack model, without per-model code:

* **capture**: the hidden states entering block k (`(B, T, H)`), for several k in one forward pass;
  the pass stops as soon as the deepest requested block has been reached.
* **serve**: run the model with the embeddings' output replaced by given hidden states and blocks
  `[0, k)` taken out of the stack, so the model's own forward still builds the attention mask, rotary
  positions, pooler and head exactly as usual, from block k on.

Serving swaps the stack's `ModuleList` for a shorter one for the duration of one forward call and puts
it back in a `finally`, so parameter names, state dicts and checkpoints outside that call never see it.
It needs one embeddings module whose output is what block 0 receives (BERT, RoBERTa, DistilBERT, Llama,
...); the cache checks this numerically on the first batch and turns itself off where it does not hold.
"""

from __future__ import annotations

import contextlib
from typing import Iterator, Optional

import torch
from torch import nn

from tunelab.errors import ModelError

__all__ = ["embedding_module", "served_prefix", "capture_block_inputs"]


class _Reached(Exception):
    """Raised inside a hook to stop a capture pass once the deepest requested block is reached."""


def _module(model: nn.Module, path: str) -> nn.Module:
    return model.get_submodule(path) if path else model


def embedding_module(model: nn.Module) -> nn.Module:
    """The single module whose output enters block 0; ModelError when the LayerStack has several or none."""
    prefixes = model.layer_stack.embedding_prefixes
    if len(prefixes) != 1:
        raise ModelError(f"running from block k needs exactly one embeddings module, found {list(prefixes) or 'none'}")
    return _module(model, prefixes[0].rstrip("."))


def _stack_slot(model: nn.Module) -> tuple[nn.Module, str, nn.Module]:
    path = model.layer_stack.blocks_path
    parent_path, _, attr = path.rpartition(".")
    return _module(model, parent_path), attr, _module(model, path)


@contextlib.contextmanager
def served_prefix(model: nn.Module, start_block: int, hidden: torch.Tensor) -> Iterator[None]:
    """Inside this context the model computes from block `start_block` on, taking `hidden` `(B, T, H)`
    as the input of that block (or, with `start_block == N`, as the output of the last block)."""
    embeddings = embedding_module(model)
    parent, attr, blocks = _stack_slot(model)
    kept = list(blocks)[start_block:]
    shorter = nn.Sequential(*kept) if isinstance(blocks, nn.Sequential) else nn.ModuleList(kept)
    embeddings.forward = lambda *args, **kwargs: hidden  # instance attribute shadows the class method
    setattr(parent, attr, shorter)
    try:
        yield
    finally:
        del embeddings.forward
        setattr(parent, attr, blocks)


def _hidden_of(args: tuple, kwargs: dict) -> torch.Tensor:
    return args[0] if args else kwargs["hidden_states"]


def capture_block_inputs(model: nn.Module, starts: list[int], input_ids: Optional[torch.Tensor] = None,
                         attention_mask: Optional[torch.Tensor] = None, **inputs: torch.Tensor) -> dict[int, torch.Tensor]:
    """Hidden states entering each block in `starts` (`N` means: leaving the last block), from one forward
    pass of `model(input_ids, attention_mask, **inputs)` (other inputs: `pixel_values`) under the caller's
    grad/autocast/eval settings."""
    stack = _stack_slot(model)[2]
    n = len(stack)
    deepest = max(starts)
    captured: dict[int, torch.Tensor] = {}
    handles = []

    def before(index: int):
        def hook(_module: nn.Module, args: tuple, kwargs: dict) -> None:
            captured[index] = _hidden_of(args, kwargs).detach()
            if index == deepest:
                raise _Reached
        return hook

    def after_last(_module: nn.Module, _args: tuple, output: object) -> None:
        captured[n] = (output[0] if isinstance(output, (tuple, list)) else output).detach()
        raise _Reached

    try:
        for k in sorted(set(starts)):
            if k < n:
                handles.append(stack[k].register_forward_pre_hook(before(k), with_kwargs=True))
            else:
                handles.append(stack[n - 1].register_forward_hook(after_last))
        try:
            model(input_ids, attention_mask, **inputs)
        except _Reached:
            pass
    finally:
        for handle in handles:
            handle.remove()
    missing: Optional[list[int]] = [k for k in starts if k not in captured] or None
    if missing:
        raise ModelError(f"the forward pass never reached blocks {missing}; the LayerStack does not describe this model")
    return captured
