"""The precision a device can really run, and the autocast context for it.

Resolved once per run (training) or per loaded run (serving), so no loop branches on hardware.
"""

from __future__ import annotations

import contextlib
from typing import Literal

import torch

__all__ = ["Precision", "Requested", "cpu_has_native_bf16", "resolve_precision", "autocast_for"]

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


def autocast_for(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """bf16 autocast on CPU or CUDA when asked; fp32 otherwise. Runs resolve `auto` and unsupported bf16
    beforehand, so `auto` here is only a caller that skipped that: it follows the same rule."""
    if precision == "auto":
        precision = resolve_precision(device, "auto")[0]
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()
