"""Dropout for training on CPU at a fraction of torch's cost, with the same distribution.

Profiling a MiniLM training step (16 x 256 tokens, 2 cores) showed dropout taking about 30% of it in fp32
and over 40% under bf16 autocast: `bernoulli_` draws one random double per element, and attention dropout
(on the B x heads x T x T probabilities) also pushes `scaled_dot_product_attention` off its fused kernel
onto a slower path with extra masking passes. Here:

- the keep mask comes from 16 random bits per element (4 per int64 word, one generator call per word)
  compared with a threshold: P(drop) = round(p * 65536) / 65536, within 8e-6 of p;
- attention with dropout is softmax(Q K^T / sqrt(d) + mask) * keep @ V / (1 - p), in the scores' own dtype,
  with the 1 / sqrt(d) and 1 / (1 - p) scales applied to the small (B, heads, T, d) tensors instead of the
  large (B, heads, T, T) one; without dropout (evaluation, frozen blocks) it is Hugging Face's SDPA path,
  unchanged;
- masks come from torch's default generator, so a seeded run repeats and a resumed run continues exactly.

Measured on this project's 2-core AVX512-BF16 CPU (benchmarks/README.md): a MiniLM training step went
from 2.4 s to 1.5 s under bf16 autocast and from 3.8 s to 3.3 s in fp32. On other devices torch's own
fused kernels are kept.
"""

from __future__ import annotations

import math
from typing import Any, Optional

import torch
from torch import nn

__all__ = ["keep_mask", "cpu_dropout", "CpuDropout", "use_fast_cpu_dropout", "ATTENTION_NAME"]

ATTENTION_NAME = "tunelab_cpu"
_LANES = 4  # int16 lanes per int64 word


def keep_mask(shape: torch.Size | tuple[int, ...], p: float, device: torch.device | str = "cpu") -> torch.Tensor:
    """Bool mask, True with probability 1 - p (to 1/65536), independent per element."""
    n = math.prod(shape)
    words = torch.empty(-(-n // _LANES), dtype=torch.int64, device=device).random_(-2 ** 63, None)  # every bit random
    lanes = words.view(torch.int16)[:n].view(tuple(shape))  # uniform over [-32768, 32767]
    return lanes >= -32768 + round(p * 65536)


class _MaskMultiply(torch.autograd.Function):
    """x * keep with `keep` saved as 1 byte per element; the gradient is g * keep."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(keep)
        return x.mul(keep)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (keep,) = ctx.saved_tensors
        return grad.mul(keep), None


def cpu_dropout(x: torch.Tensor, p: float, training: bool = True) -> torch.Tensor:
    """`F.dropout(x, p, training)` with the same distribution; torch's own kernel off the CPU."""
    if not training or p == 0.0:
        return x
    if x.device.type != "cpu" or p >= 1.0:
        return nn.functional.dropout(x, p, training)
    return _MaskMultiply.apply(x, keep_mask(x.shape, p, x.device)).mul_(1.0 / (1.0 - p))


class CpuDropout(nn.Dropout):
    """Drop-in for `nn.Dropout` (same `p`, same train/eval behaviour, no parameters)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return cpu_dropout(x, self.p, self.training)


def attention(module: nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
              attention_mask: Optional[torch.Tensor], dropout: float = 0.0, scaling: Optional[float] = None,
              is_causal: Optional[bool] = None, **kwargs: Any) -> tuple[torch.Tensor, None]:
    """A Hugging Face attention function (AttentionInterface): query/key/value `(B, heads, T, d)` ->
    `(B, T, heads, d)`. Only training-time attention dropout on CPU for plain bidirectional attention is
    computed here; everything else (evaluation, causal or grouped-query attention, other options) is SDPA."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    # evaluation (dropout 0) returns at the first test: this runs for every layer of every forward pass
    ours = (0.0 < dropout < 1.0 and query.device.type == "cpu" and not is_causal
            and kwargs.get("position_bias") is None and kwargs.get("cache") is None and kwargs.get("softcap") is None
            and getattr(module, "num_key_value_groups", 1) == 1 and key.shape[1] == query.shape[1]
            and (attention_mask is None or attention_mask.dtype == torch.bool or attention_mask.is_floating_point()))
    if not ours:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      is_causal=is_causal, **kwargs)
    scale = scaling if scaling is not None else query.shape[-1] ** -0.5
    scores = torch.matmul(query * scale, key.transpose(-1, -2))  # (B, heads, T, T)
    if attention_mask is not None:
        if attention_mask.dtype == torch.bool:
            scores = scores.masked_fill(~attention_mask, torch.finfo(scores.dtype).min)
        else:
            scores = scores + attention_mask.to(scores.dtype)
    probs = torch.softmax(scores, dim=-1)  # computed in fp32 internally, stored in the scores' dtype
    probs = _MaskMultiply.apply(probs, keep_mask(probs.shape, dropout, probs.device))
    out = torch.matmul(probs, value).mul_(1.0 / (1.0 - dropout))  # (B, heads, T, d)
    return out.transpose(1, 2).contiguous(), None


def _register_attention() -> None:
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(ATTENTION_NAME, attention)
    AttentionMaskInterface.register(ATTENTION_NAME, sdpa_mask)  # the same boolean masks SDPA gets


def use_fast_cpu_dropout(model: nn.Module) -> dict[str, int]:
    """Swap every `nn.Dropout` in `model` for :class:`CpuDropout` and point Hugging Face models that use
    SDPA at :func:`attention`. Parameter names, state dicts and saved configs are unchanged. Returns what
    was swapped: {"dropout": modules, "attention": models}."""
    swapped = {"dropout": 0, "attention": 0}
    for parent in model.modules():
        for name, child in list(parent.named_children()):
            if type(child) is nn.Dropout:
                replacement = CpuDropout(child.p, child.inplace)
                replacement.train(child.training)
                setattr(parent, name, replacement)
                swapped["dropout"] += 1
    for module in model.modules():
        config = getattr(module, "config", None)
        if getattr(config, "_attn_implementation", None) == "sdpa" and hasattr(module, "set_attn_implementation"):
            _register_attention()
            try:
                module.set_attn_implementation(ATTENTION_NAME)
            except (ValueError, ImportError):  # a model class that does not accept custom attention: keep SDPA
                continue
            swapped["attention"] += 1
    return swapped
