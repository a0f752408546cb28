"""Text augmentation of training batches, on token ids, with no model of its own: span masking, neighbour
swaps and token dropout (the EDA family's model-free operations, Wei & Zou 2019, at sub-word level; span
masking as SpanBERT masks, Joshi et al. 2020).

Why on token ids and per batch: the batch is already tokenised and padded, so an augmentation costs a few
tensor operations a step and no second tokenizer pass; it is drawn from the generator `iterate_batches`
seeds with (seed, epoch, batch), so a run repeats, a resumed epoch sees the same tokens, and every rank of a
DDP run augments the global batch alike before taking its rows. Special tokens ([CLS], [SEP], padding) are
never touched, and a row keeps at least one of its own tokens.
"""

from __future__ import annotations

from typing import Any, Optional

import torch

from tunelab.config.schema import AugmentConfig
from tunelab.data.encoding import Augment
from tunelab.errors import ConfigError

__all__ = ["make_text_augment", "mask_spans", "swap_neighbours", "drop_tokens"]


def make_text_augment(config: AugmentConfig, tokenizer: Any) -> Augment:
    """The batch transform `data.augment` asks for: spans masked, then neighbours swapped, then tokens dropped."""
    specials = torch.tensor(sorted(set(getattr(tokenizer, "all_special_ids", ()) or ())), dtype=torch.long)
    mask_id = _mask_id(tokenizer) if config.span_mask > 0 else None
    pad_id = getattr(tokenizer, "pad_token_id", None) or 0

    def augment(inputs: dict[str, torch.Tensor], generator: torch.Generator) -> dict[str, torch.Tensor]:
        ids, attention = inputs["input_ids"], inputs["attention_mask"]
        own = attention.bool() & ~torch.isin(ids, specials)  # the example's own tokens: the ones to change
        if mask_id is not None:
            ids = mask_spans(ids, own, config.span_mask, config.span_length, mask_id, generator)
        if config.swap > 0:
            ids = swap_neighbours(ids, own, config.swap, generator)
        if config.token_dropout > 0:
            ids, attention = drop_tokens(ids, attention, own, config.token_dropout, pad_id, generator)
        return {**inputs, "input_ids": ids, "attention_mask": attention}

    return augment


def _mask_id(tokenizer: Any) -> int:
    for name in ("mask_token_id", "unk_token_id"):
        value: Optional[int] = getattr(tokenizer, name, None)
        if value is not None:
            return value
    raise ConfigError("data.augment.span_mask: this tokenizer has neither a mask nor an unknown token to mask "
                      "with; use token_dropout or swap instead")


def mask_spans(ids: torch.Tensor, own: torch.Tensor, share: float, length: int, mask_id: int,
               generator: torch.Generator) -> torch.Tensor:
    """About `share` of the own tokens replaced by `mask_id`, in runs of `length` (spans start at own tokens
    with probability share / length and cover the own tokens among the next `length` positions)."""
    starts = (torch.rand(ids.shape, generator=generator) < share / length) & own
    covered = starts.clone()
    for shift in range(1, length):
        covered[:, shift:] |= starts[:, :-shift]
    covered &= own
    return torch.where(covered, torch.full_like(ids, mask_id), ids)


def swap_neighbours(ids: torch.Tensor, own: torch.Tensor, share: float, generator: torch.Generator) -> torch.Tensor:
    """About `share` of the own tokens swapped with the next own token; a token takes part in one swap at most
    (a swap starting at i blocks one starting at i + 1)."""
    pairable = own[:, :-1] & own[:, 1:]
    chosen = (torch.rand(pairable.shape, generator=generator) < share / 2) & pairable
    chosen[:, 1:] &= ~chosen[:, :-1]
    out = ids.clone()
    left, right = out[:, :-1], out[:, 1:]  # views into out
    was_left = ids[:, :-1][chosen]
    left[chosen] = ids[:, 1:][chosen]
    right[chosen] = was_left
    return out


def drop_tokens(ids: torch.Tensor, attention: torch.Tensor, own: torch.Tensor, share: float, pad_id: int,
                generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Each own token deleted with probability `share`; the rest close up to the left, the row keeps its width
    (padding after). A row that would lose all its own tokens is kept whole."""
    dropped = (torch.rand(ids.shape, generator=generator) < share) & own
    dropped &= ((own & ~dropped).any(dim=1, keepdim=True))
    keep = attention.bool() & ~dropped
    position = keep.long().cumsum(dim=1) - 1
    rows = torch.arange(ids.shape[0]).unsqueeze(1).expand_as(ids)
    out_ids = torch.full_like(ids, pad_id)
    out_attention = torch.zeros_like(attention)
    out_ids[rows[keep], position[keep]] = ids[keep]
    out_attention[rows[keep], position[keep]] = 1
    return out_ids, out_attention
