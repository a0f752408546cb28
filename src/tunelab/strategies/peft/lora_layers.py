"""LoRA's inserted layer: the frozen base layer plus a low-rank update, for Linear, Conv1d/2d, Embedding and
HF Conv1D (with rsLoRA scaling and DoRA). The method, its section and its rules are in `lora.py`, which
imports this module only when a model is adapted.
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from tunelab.errors import ConfigError
from tunelab.strategies.peft.layer import PeftLayer
from tunelab.strategies.peft.quantize_layers import dequantized_linear, is_4bit

__all__ = ["LoraLayer", "LORA_TYPES", "layer_kind"]


def _hf_conv1d() -> type | None:
    try:
        from transformers.pytorch_utils import Conv1D
    except ImportError:  # pragma: no cover - transformers always ships it
        return None
    return Conv1D


def layer_kind(module: nn.Module) -> str | None:
    """LoRA's name for the type of `module` (one of LORA_TYPES), or None when LoRA cannot adapt it."""
    conv1d = _hf_conv1d()
    if conv1d is not None and isinstance(module, conv1d):
        return "Conv1D"
    if is_4bit(module):  # QLoRA's base: a Linear whose weight bitsandbytes stores in 4 bits
        return "Linear"
    for kind in ("Linear", "Conv1d", "Conv2d", "Embedding"):
        if type(module) is getattr(nn, kind):
            return kind
    return None


LORA_TYPES = ("Linear", "Conv1d", "Conv2d", "Embedding", "Conv1D")


class LoraLayer(PeftLayer):
    """Wraps one base layer (kept as `base_layer`, frozen) with a low-rank update."""

    declared: ClassVar[tuple[str, ...]] = ("lora_A.weight", "lora_B.weight", "lora_embedding_A", "lora_embedding_B",
                                           "lora_magnitude_vector")
    mergeable: ClassVar[bool] = True

    def __init__(self, base: nn.Module, *, rank: int, alpha: float, dropout: float, rslora: bool, dora: bool) -> None:
        super().__init__()
        self.kind = layer_kind(base)
        if self.kind is None:
            raise ConfigError(f"strategy.lora: cannot adapt a {type(base).__name__}; LoRA supports {', '.join(LORA_TYPES)}")
        if dora and self.kind != "Linear":
            raise ConfigError(f"strategy.lora.dora: DoRA is implemented for Linear layers, not {self.kind}; "
                              "set dora: false or target only Linear modules")
        self.base_layer = base
        self.rank, self.scaling = rank, alpha / (math.sqrt(rank) if rslora else rank)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self._build(base, rank)
        if dora:
            # magnitude m = row norms of W at init, so DoRA also starts equal to the base
            self.lora_magnitude_vector = nn.Parameter(self._weight_norm(self.base_layer.weight.detach(), torch.zeros(())))
        self.register_buffer("_merge_norm", torch.zeros(0), persistent=False)

    def _build(self, base: nn.Module, rank: int) -> None:
        if self.kind == "Embedding":
            # peft's convention: A zero, B random (A is indexed like the embedding table)
            self.lora_embedding_A = nn.Parameter(torch.zeros(rank, base.num_embeddings))
            self.lora_embedding_B = nn.Parameter(torch.randn(base.embedding_dim, rank))
            return
        if self.kind in ("Conv1d", "Conv2d"):
            if base.groups != 1:
                raise ConfigError("strategy.lora: grouped convolutions are not supported; exclude this module")
            conv = nn.Conv1d if self.kind == "Conv1d" else nn.Conv2d
            self.lora_A = conv(base.in_channels, rank, base.kernel_size, base.stride, base.padding, base.dilation, bias=False)
            self.lora_B = conv(rank, base.out_channels, 1, 1, bias=False)
        else:
            fan_in, fan_out = (base.weight.shape if self.kind == "Conv1D" else (base.in_features, base.out_features))
            self.lora_A = nn.Linear(fan_in, rank, bias=False)
            self.lora_B = nn.Linear(rank, fan_out, bias=False)
        nn.init.kaiming_uniform_(self.lora_A.weight, a=math.sqrt(5))
        nn.init.zeros_(self.lora_B.weight)

    # -- the update, in the base weight's own layout ------------------------------------------------
    def delta_weight(self) -> torch.Tensor:
        """s * B A shaped like `base_layer.weight`."""
        if self.kind == "Embedding":
            return (self.lora_embedding_B @ self.lora_embedding_A).T * self.scaling      # (num_embeddings, dim)
        a, b = self.lora_A.weight, self.lora_B.weight
        if self.kind in ("Conv1d", "Conv2d"):
            return (b.flatten(1) @ a.flatten(1)).view_as(self.base_layer.weight) * self.scaling
        delta = b @ a                                                                      # (out, in)
        return (delta.T if self.kind == "Conv1D" else delta) * self.scaling

    @staticmethod
    def _weight_norm(weight: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
        return torch.linalg.norm(weight + delta, dim=1)                                  # (out,)

    # -- forward ------------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        result = self.base_layer(x)
        if self.merged:
            return result
        if self.kind == "Embedding":
            base = self.base_layer
            after_a = F.embedding(x, self.lora_embedding_A.T, base.padding_idx, base.max_norm, base.norm_type,
                                  base.scale_grad_by_freq, base.sparse)                   # (..., r)
            return result + (after_a @ self.lora_embedding_B.T) * self.scaling
        dropped = self.dropout(x)
        update = self.lora_B(self.lora_A(dropped)) * self.scaling
        if not hasattr(self, "lora_magnitude_vector"):
            return result + update
        # DoRA as peft computes it: the norm is a constant for the gradient (DoRA paper, section 4.3)
        weight = self.base_layer.weight
        norm = self._weight_norm(weight, self.delta_weight().detach()).detach()
        scale = (self.lora_magnitude_vector / norm).view(1, -1)
        return result + (scale - 1) * F.linear(dropped, weight) + scale * update

    # -- merge --------------------------------------------------------------------------------------
    @torch.no_grad()
    def merge(self) -> None:
        """Fold the update into the base weight in place; a second call does nothing. A 4-bit base is first
        dequantized into a plain Linear (as it computes), so the merged layer is full precision, as peft's is."""
        if self.merged:
            return
        if is_4bit(self.base_layer):
            self.base_layer = dequantized_linear(self.base_layer)
        weight = self.base_layer.weight
        delta = self.delta_weight()
        if hasattr(self, "lora_magnitude_vector"):
            norm = self._weight_norm(weight, delta)
            self._merge_norm = norm
            weight.mul_(1).add_(delta).mul_((self.lora_magnitude_vector / norm).view(-1, 1))
        else:
            weight.add_(delta)
        self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        if not self.merged:
            return
        weight = self.base_layer.weight
        if hasattr(self, "lora_magnitude_vector"):
            weight.div_((self.lora_magnitude_vector / self._merge_norm).view(-1, 1))
        weight.sub_(self.delta_weight())
        self.merged = False
