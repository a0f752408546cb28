"""Device-level speed settings of training: torch.compile per block and the fastest AdamW kernel (the
precision a device runs is inference's: tunelab/inference/precision.py).

Kept apart from the trainer so the loop never branches on hardware: a run resolves these once.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["compile_blocks", "adamw_implementation"]


def compile_blocks(model: nn.Module) -> int:
    """`torch.compile` every block of the LayerStack in place (dynamic shapes, for length-bucketed batches).

    Per block rather than the whole model: parameter names stay unchanged (plans, checkpoints and saved
    models address them), and serving from block k, which shortens the block list, needs no recompile.
    Returns the number of blocks compiled."""
    blocks = model.get_submodule(model.layer_stack.blocks_path)
    for block in blocks:
        block.compile(dynamic=True)
    return len(blocks)


def adamw_implementation(device: torch.device) -> dict[str, bool]:
    """AdamW keyword for the fastest kernel on `device`: the fused one (one kernel for all parameters;
    on CPU 6x faster per step than the default per-tensor loop for MiniLM's 22M parameters), else foreach."""
    if device.type in ("cpu", "cuda"):
        return {"fused": True}
    return {"foreach": True}
