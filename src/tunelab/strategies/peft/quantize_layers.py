"""QLoRA's 4-bit base (Dettmers et al. 2023): every Linear of the backbone outside the head stored as NF4 (or FP4)
through bitsandbytes' `Linear4bit`, frozen, with LoRA's layers on top in the compute dtype.

bitsandbytes owns the format and the kernels; tunelab only swaps the modules and undoes the swap where a plain
weight is needed (merging). Its CUDA kernels are what makes 4-bit worth having: on a CPU each forward pass
dequantizes every weight again, slower than the bf16 base it saves memory on, so a run refuses a CPU device
(`lora.check_quantize_device`) rather than emulate. This module itself works on any device: the unit tests
quantize a tiny model on the CPU to check the wiring.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from tunelab.errors import ModelError
from tunelab.optional import require

if TYPE_CHECKING:
    from tunelab.models.task_model import TaskModel

__all__ = ["COMPUTE_DTYPES", "is_4bit", "quantize_linears", "dequantized_linear", "round_linears"]

COMPUTE_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


def _bnb() -> Any:
    require("strategy.lora.quantize (4-bit base weights)", "bitsandbytes", error=ModelError)
    import bitsandbytes

    return bitsandbytes


def is_4bit(module: nn.Module) -> bool:
    """A bitsandbytes 4-bit Linear (told by its class, so that a model without one never imports bitsandbytes)."""
    return type(module).__name__ == "Linear4bit" and type(module).__module__.startswith("bitsandbytes")


def quantize_linears(model: TaskModel, skip: set[str], *, quant_type: str, double_quant: bool,
                     compute_dtype: str) -> list[str]:
    """Replace every `nn.Linear` of `model.network` whose path is not in `skip` (the head) by a frozen 4-bit
    copy, quantized where its weight lies; the paths replaced, in order."""
    bnb = _bnb()
    from tunelab.strategies.peft.base import replace_module

    paths = [path for path, module in model.network.named_modules(prefix="network")
             if type(module) is nn.Linear and path not in skip]
    for path in paths:
        base: nn.Linear = model.get_submodule(path)
        device = base.weight.device
        quantized = bnb.nn.Linear4bit(base.in_features, base.out_features, bias=base.bias is not None,
                                      compute_dtype=COMPUTE_DTYPES[compute_dtype], compress_statistics=double_quant,
                                      quant_type=quant_type, device="meta")
        quantized.weight = bnb.nn.Params4bit(base.weight.data.float(), requires_grad=False, quant_type=quant_type,
                                             compress_statistics=double_quant, module=quantized)
        if base.bias is not None:
            quantized.bias = nn.Parameter(base.bias.data.clone(), requires_grad=False)
        # on a CPU with AVX512-BF16, bitsandbytes repacks the weights in place at the first evaluation pass (a bf16
        # inference layout), and the next training step then fails in its matmul: keep the one layout (no effect on
        # CUDA, where the attribute is never read)
        quantized.support_avx512bf16_for_cpu = False
        replace_module(model, path, quantized.to(device))   # Params4bit quantizes on its first move
    return paths


def dequantized_linear(module: nn.Module) -> nn.Linear:
    """A plain Linear holding the 4-bit layer's weights as they compute (what a merge adds the update to)."""
    bnb = _bnb()
    weight = bnb.functional.dequantize_4bit(module.weight.data, module.weight.quant_state)
    plain = nn.Linear(module.in_features, module.out_features, bias=module.bias is not None,
                      device=weight.device, dtype=weight.dtype)
    with torch.no_grad():
        plain.weight.copy_(weight)
        if module.bias is not None:
            plain.bias.copy_(module.bias.to(weight.dtype))
    plain.requires_grad_(False)
    return plain


def round_linears(model: TaskModel, skip: set[str], *, quant_type: str, double_quant: bool) -> None:
    """Every Linear that `quantize_linears` would store in 4 bits, given the weights it would compute with, as a
    plain Linear of the original dtype (a QLoRA adapter's base when the run is loaded)."""
    from tunelab.strategies.peft.base import replace_module

    dtypes = {path: model.get_submodule(path).weight.dtype for path, module in model.network.named_modules(prefix="network")
              if type(module) is nn.Linear and path not in skip}
    for path in quantize_linears(model, skip, quant_type=quant_type, double_quant=double_quant, compute_dtype="fp32"):
        replace_module(model, path, dequantized_linear(model.get_submodule(path)).to(dtypes[path]))
