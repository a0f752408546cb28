"""A decoder LM (instruction tuning) as one graph a decoding loop calls once per token, with its key/value cache
as explicit inputs and outputs.

`(input_ids (B, t), attention_mask (B, p + t), past.<i>.key/value (B, heads, p, dim) ...) -> (logits (B, V) of the
last position, present.<i>.key/value (B, heads, p + t, dim) ...)`. One graph serves the prompt (t = prompt length)
and every later token (t = 1), so there is no second graph to keep in step. The cache starts as one slot per
layer that the mask hides (`p = 1`, mask 0): a zero-length axis would be specialised away by `torch.export`,
and a hidden slot changes nothing (its attention weight is zero and the positions count only unmasked tokens).
Positions come from the mask inside the graph, as `generate` computes them for left-padded batches, so the
loop around the graph (inference/decoding.py) needs nothing but the mask.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

__all__ = ["DecoderStep", "DecoderSpec", "decoder_spec", "decoder_example_inputs", "decoder_names",
           "decoder_dynamic_shapes"]


@dataclass(frozen=True)
class DecoderSpec:
    """The cache layout the graph expects (export.json's `decoder`)."""

    layers: int
    kv_heads: int
    head_dim: int

    def as_json(self) -> dict[str, int]:
        return asdict(self)


class DecoderStep(nn.Module):
    """A causal LM (transformers, adapters merged or in place) behind the one-step signature above."""

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.network = network

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, *past: torch.Tensor) -> tuple[torch.Tensor, ...]:
        from transformers import DynamicCache

        cache = DynamicCache(ddp_cache_data=[(past[i], past[i + 1]) for i in range(0, len(past), 2)])
        positions = (attention_mask.cumsum(-1) - 1).clamp(min=0)[:, -input_ids.shape[1]:]
        out = self.network(input_ids=input_ids, attention_mask=attention_mask, position_ids=positions, cache=cache,
                           use_cache=True, logits_to_keep=1)
        present: list[torch.Tensor] = []
        for layer in out.cache.layers:
            present += [layer.keys, layer.values]
        return (out.logits[:, -1, :].float(), *present)


@torch.no_grad()
def decoder_spec(network: nn.Module) -> DecoderSpec:
    """Read the cache layout off one real forward pass (any decoder transformers caches with DynamicLayer)."""
    from transformers import DynamicCache

    out = network(input_ids=torch.zeros((1, 1), dtype=torch.long), cache=DynamicCache(), use_cache=True)
    keys = out.cache.layers[0].keys
    return DecoderSpec(layers=len(out.cache.layers), kv_heads=int(keys.shape[1]), head_dim=int(keys.shape[-1]))


def decoder_names(spec: DecoderSpec) -> tuple[list[str], list[str]]:
    """The graph's input and output names, in call order."""
    cache = [f"{{}}.{i}.{kv}" for i in range(spec.layers) for kv in ("key", "value")]
    return (["input_ids", "attention_mask", *(c.format("past") for c in cache)],
            ["logits", *(c.format("present") for c in cache)])


def decoder_example_inputs(spec: DecoderSpec, vocab_size: int) -> tuple[torch.Tensor, ...]:
    """Tracing inputs: 2 rows of 5 new tokens (one left-padded) after 3 cached positions."""
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(5, vocab_size, (2, 5), generator=generator)
    mask = torch.ones((2, 8), dtype=torch.long)
    mask[0, :4] = 0
    past = [torch.randn(2, spec.kv_heads, 3, spec.head_dim, generator=generator) for _ in range(2 * spec.layers)]
    return (ids, mask, *past)


def decoder_dynamic_shapes(spec: DecoderSpec) -> tuple[Any, ...]:
    """Batch, new-token and cache lengths are all dynamic (AUTO: their relation, mask = past + new, is the
    exporter's to find)."""
    auto = torch.export.Dim.AUTO
    return ({0: auto, 1: auto}, {0: auto, 1: auto}, tuple({0: auto, 2: auto} for _ in range(2 * spec.layers)))
