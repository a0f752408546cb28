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
    """(precision to run, note for the user): bf16 only where the device computes it natively; `auto`
    is bf16 on a GPU that has it (the usual GPU recipe) and fp32 on CPU (exact, and no slower for
    inference-heavy runs on CPUs without bf16 units)."""
    if requested == "auto":
        bf16_gpu = device.type == "cuda" and torch.cuda.is_bf16_supported()
        return ("bf16" if bf16_gpu else "fp32"), ""
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
