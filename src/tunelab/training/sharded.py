"""FSDP (`train.distributed: fsdp`): parameters, gradients and optimizer state sharded over the ranks with
PyTorch's own `fully_shard` (FSDP2, the FULL_SHARD strategy: every FSDP unit's parameters are gathered for its
forward and backward and freed after), one unit per LayerStack block, one per embedding module, one for the rest.

Why the trainer shards a twin of the model rather than the model: `fully_shard` turns a module's parameters into
DTensor shards in place, and everything after the fit (test scoring, the forgetting meter, generation, saving in
transformers' and peft's formats) expects plain tensors. The twin is a copy of the module tree that shares the
model's parameter and buffer objects until it is sharded; the model's own parameter storage is then released,
so a rank holds only its shards while training, and `gather_into` hands the trained weights back at the end.
Checkpoints hold whole tensors (`whole`), the single-process format, so a run resumes on any world size's
shards (`shard_like`, `shard_optimizer_state`).
"""

from __future__ import annotations

import copy
import itertools
from typing import Any

import torch
from torch import nn
from torch.distributed.fsdp import FSDPModule, fully_shard
from torch.distributed.tensor import DTensor, distribute_tensor

from tunelab.models.layerstack import LayerStack

__all__ = ["shard_twin", "gather_into", "whole", "shard_like", "shard_optimizer_state", "is_sharded",
           "set_gradient_sync", "training_state_bytes"]


def is_sharded(model: nn.Module) -> bool:
    return isinstance(model, FSDPModule)


def shard_twin(model: nn.Module) -> nn.Module:
    """A copy of `model` under FSDP (an embedding unit, a unit per block, the root); `model` keeps its modules,
    buffers and parameter objects, whose storage is released until `gather_into` fills it again."""
    shared = {id(t): t for t in itertools.chain(model.parameters(), model.buffers())}
    twin = copy.deepcopy(model, shared)
    stack: LayerStack = twin.layer_stack
    modules = dict(twin.named_modules())
    for prefix in stack.embedding_prefixes:
        fully_shard(modules[prefix.rstrip(".")])
    for block in modules[stack.blocks_path]:
        fully_shard(block)
    fully_shard(twin)
    with torch.no_grad():
        for parameter in model.parameters():  # the twin holds the shards; the whole tensors go
            parameter.data = parameter.data.new_empty(0)
    return twin


def gather_into(twin: nn.Module, model: nn.Module) -> None:
    """The twin's trained parameters, gathered whole on every rank, back into `model` (a collective: every
    rank calls it)."""
    named = dict(model.named_parameters())
    with torch.no_grad():
        for name, parameter in twin.named_parameters():
            named[name].data = whole(parameter.detach())


def whole(value: Any) -> Any:
    """A DTensor gathered into one plain tensor (a collective: every rank calls it, for the same tensors in the
    same order); the values of a mapping likewise; anything else as it is."""
    if isinstance(value, DTensor):
        return value.full_tensor()
    if isinstance(value, dict):  # in sorted order: a loaded checkpoint's dict order differs between processes
        return {k: whole(value[k]) for k in sorted(value)}
    return value


def shard_like(value: torch.Tensor, parameter: torch.Tensor) -> torch.Tensor:
    """A whole tensor cut as `parameter` is sharded (each rank keeps its own piece; no communication)."""
    if not isinstance(parameter, DTensor) or isinstance(value, DTensor):
        return value
    return distribute_tensor(value.to(parameter.device), parameter.device_mesh, parameter.placements,
                             src_data_rank=None)


def shard_optimizer_state(optimizer: torch.optim.Optimizer) -> None:
    """After loading a checkpoint's whole optimizer state: each moment cut like its parameter."""
    for group in optimizer.param_groups:
        for parameter in group["params"]:
            state = optimizer.state.get(parameter, {})
            for key, value in state.items():
                if isinstance(value, torch.Tensor) and value.shape == parameter.shape and value.dim():
                    state[key] = shard_like(value, parameter)


def set_gradient_sync(model: nn.Module, sync: bool) -> None:
    """FSDP's no_sync: a micro-batch that only accumulates keeps its unsharded gradients until the last one."""
    if isinstance(model, FSDPModule):
        model.set_requires_gradient_sync(sync)


def training_state_bytes(model: nn.Module, optimizer: torch.optim.Optimizer) -> int:
    """Bytes this rank holds of the parameters, their gradients and the optimizer's moments (a DTensor counts
    its shard): what FSDP divides among the ranks and DDP keeps whole on each (its buckets not counted)."""
    parameters = list(model.parameters())
    moments = [v for state in optimizer.state.values() for v in state.values()
               if isinstance(v, torch.Tensor) and v.dim()]
    return _local_bytes(parameters + [p.grad for p in parameters if p.grad is not None] + moments)


def _local_bytes(tensors: list[torch.Tensor]) -> int:
    total = 0
    for tensor in tensors:
        local = tensor.to_local() if isinstance(tensor, DTensor) else tensor
        total += local.numel() * local.element_size()
    return total
