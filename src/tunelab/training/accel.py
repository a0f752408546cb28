"""Device-level speed settings: the precision a device can really run, and torch.compile per block.

Kept apart from the trainer so the loop never branches on hardware: run.py resolves these once.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

__all__ = ["resolve_precision", "cpu_has_native_bf16", "compile_blocks", "adamw_implementation"]

Precision = Literal["fp32", "bf16"]
Requested = Literal["auto", "fp32", "bf16"]


def cpu_has_native_bf16() -> bool:
    """AVX512-BF16 or AMX: bf16 matmuls run in hardware; elsewhere they are emulated and slower than fp32."""
    for probe in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):
        check = getattr(torch.cpu, probe, None)
        if check is not None and check():
            return True
    return False


def resolve_precision(device: torch.device, requested: Requested) -> tuple[Precision, str]:
    """(precision to run, note for the user): bf16 only where the device computes it natively. `auto` is
    bf16 autocast wherever the hardware has bf16 units (a GPU with bf16, a CPU with AVX512-BF16 or AMX):
    on such a CPU a MiniLM training step ran 1.5x and inference 1.9x faster than fp32 with the same test
    accuracy (benchmarks/README.md); elsewhere bf16 is emulated and slower, so `auto` is fp32 there."""
    if requested == "auto":
        if device.type == "cuda":
            return ("bf16" if torch.cuda.is_bf16_supported() else "fp32"), ""
        return ("bf16" if device.type == "cpu" and cpu_has_native_bf16() else "fp32"), ""
    if requested != "bf16":
        return requested, ""
    if device.type == "cuda":
        if torch.cuda.is_bf16_supported():
            return "bf16", ""
        return "fp32", "train.precision bf16: this GPU has no bf16 support; running fp32"
    if device.type == "cpu" and not cpu_has_native_bf16():
        return "fp32", ("train.precision bf16: this CPU has no native bf16 (AVX512-BF16 or AMX), where bf16 is "
                        "slower than fp32; running fp32")
    return "bf16", ""


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
