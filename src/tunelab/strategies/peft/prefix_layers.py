"""Prefix tuning's layers: the encoder that holds (or produces) every layer's key/value prefixes, and the
wrapper that makes a BERT-style self-attention attend over [prefix; sequence]. The method is in `prefix.py`.
"""

from __future__ import annotations

from typing import Any, ClassVar, Optional

import torch
import torch.nn.functional as F
from torch import nn

from tunelab.errors import ModelError
from tunelab.strategies.peft.layer import PeftLayer

__all__ = ["PrefixEncoder", "PrefixAttention", "attend", "self_attention_path"]


class PrefixEncoder(PeftLayer):
    """Produces (k, layers, 2, H): the key and value prefixes of every layer."""

    declared: ClassVar[tuple[str, ...]] = ("prefix", "embedding", "mlp.0.weight", "mlp.0.bias", "mlp.2.weight", "mlp.2.bias")

    def __init__(self, num_tokens: int, layers: int, hidden: int, reparameterize: bool, mlp_hidden: int) -> None:
        super().__init__()
        self.shape = (num_tokens, layers, 2, hidden)
        if reparameterize:
            self.embedding = nn.Parameter(torch.randn(num_tokens, hidden) * 0.02)
            self.mlp = nn.Sequential(nn.Linear(hidden, mlp_hidden), nn.Tanh(), nn.Linear(mlp_hidden, layers * 2 * hidden))
        else:
            self.prefix = nn.Parameter(torch.randn(num_tokens, layers * 2 * hidden) * 0.02)

    def forward(self) -> torch.Tensor:
        flat = self.mlp(self.embedding) if hasattr(self, "mlp") else self.prefix
        return flat.view(self.shape)


def _additive(mask: Optional[torch.Tensor], dtype: torch.dtype) -> Optional[torch.Tensor]:
    """transformers passes None, a boolean mask (True = attend) or an additive float mask; make it additive."""
    if mask is None or mask.dtype != torch.bool:
        return mask
    return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(~mask, torch.finfo(dtype).min)


def attend(attn: nn.Module, hidden: torch.Tensor, mask: Optional[torch.Tensor], prefix_k: torch.Tensor,
           prefix_v: torch.Tensor) -> torch.Tensor:
    """BERT-style self-attention over [prefix; sequence]. hidden (B, T, H), prefixes (1, P, H) -> (B, T, H)."""
    batch, length, _ = hidden.shape
    heads, size = attn.num_attention_heads, attn.attention_head_size

    def split(x: torch.Tensor) -> torch.Tensor:
        return x.view(batch, -1, heads, size).transpose(1, 2)                  # (B, heads, len, d)
    q = split(attn.query(hidden))
    k = torch.cat((split(prefix_k.expand(batch, -1, -1)), split(attn.key(hidden))), dim=2)
    v = torch.cat((split(prefix_v.expand(batch, -1, -1)), split(attn.value(hidden))), dim=2)
    mask = _additive(mask, q.dtype)
    if mask is not None:
        mask = F.pad(mask, (prefix_k.shape[-2], 0), value=0.0)                 # prefixes are always visible
    dropout = attn.dropout.p if attn.training else 0.0
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout, scale=size ** -0.5)
    return out.transpose(1, 2).reshape(batch, length, heads * size)


class PrefixAttention(PeftLayer):
    """Wraps one self-attention module; owns no parameters (the shared encoder holds them)."""

    def __init__(self, base: nn.Module, encoder: PrefixEncoder, layer: int) -> None:
        super().__init__()
        self.base_layer, self.layer = base, layer
        self.__dict__["encoder"] = encoder   # a reference, not a submodule: its parameters have one name

    def forward(self, hidden_states: torch.Tensor, attention_mask: Optional[torch.Tensor] = None, *args: Any,
                **kwargs: Any) -> tuple[torch.Tensor, None]:
        prefixes = self.encoder()[:, self.layer]                                # (P, 2, H)
        out = attend(self.base_layer, hidden_states, attention_mask, prefixes[:, 0].unsqueeze(0), prefixes[:, 1].unsqueeze(0))
        return out, None


def self_attention_path(block: nn.Module) -> str:
    """The path, inside a block, of its BERT-style self-attention module (query, key, value Linear layers)."""
    for name, module in block.named_modules():
        if all(isinstance(getattr(module, a, None), nn.Linear) for a in ("query", "key", "value")) \
                and hasattr(module, "attention_head_size"):
            return name
    raise ModelError("prefix tuning: no BERT-style self-attention (query/key/value Linear layers) found in the blocks; "
                     "use lora or ia3 for this architecture")
