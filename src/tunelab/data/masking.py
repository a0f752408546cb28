"""Masked-language-model inputs and targets, on token ids: BERT's recipe (Devlin et al. 2019). In each example
15% of the tokens that are its own (not [CLS], [SEP], padding) are chosen, at least one, exactly
max(1, round(0.15 n)) of n as BERT's data preparation chose them; of the chosen, 80% become the mask token,
10% a random token of the vocabulary (special tokens excluded) and 10% stay as they were. The targets are the
original tokens at the chosen positions and IGNORE_INDEX everywhere else.

Two kinds of draws, both repeatable:
- training batches are masked afresh every epoch (RoBERTa's dynamic masking) from the generator
  `iterate_batches` seeds with (seed, epoch, batch), as text augmentation is: a run repeats, `--resume`
  continues bit for bit and every DDP rank masks the global batch alike;
- every encoded example also carries fixed masks, drawn from a generator seeded by its own token ids, so the
  validation and test scores of every epoch, every run and every seed (and of the base model) are taken on the
  same masked tokens, and `tunelab eval` on the file gives them again.

A training batch's own tokens are recovered from its fixed masks (the targets hold the originals where a mask
is), so the batch transform needs no second copy of the split.
"""

from __future__ import annotations

import zlib
from typing import Any

import numpy as np
import torch

from tunelab.data.encoding import IGNORE_INDEX, Augment
from tunelab.errors import ModelError

__all__ = ["MASK_SHARE", "MaskingSpec", "masking_spec", "mask_tokens", "fixed_masks", "make_mlm_masking"]

MASK_SHARE = 0.15     # of an example's own tokens
MASKED, RANDOM = 0.8, 0.1  # of the chosen: the mask token, a random token; the rest keep their token
_SALT = 0x4D4C4D       # "MLM": the fixed masks' generator is the ids' CRC32 mixed with this


class MaskingSpec:
    """What masking needs of a tokenizer: its mask id, its special ids and the ids a random draw may give."""

    def __init__(self, mask_id: int, special_ids: list[int], vocab_size: int) -> None:
        self.mask_id = mask_id
        self.special = torch.tensor(sorted(set(special_ids)), dtype=torch.long)
        allowed = torch.ones(vocab_size, dtype=torch.bool)
        allowed[self.special[self.special < vocab_size]] = False
        self.replacements = allowed.nonzero().squeeze(1)  # (V',) ids a random replacement draws from


def masking_spec(tokenizer: Any) -> MaskingSpec:
    """The tokenizer's mask token, special tokens and vocabulary (the caller checks that it has a mask token)."""
    mask_id = getattr(tokenizer, "mask_token_id", None)
    if mask_id is None:
        raise ModelError("model: its tokenizer has no mask token to hide tokens with")
    return MaskingSpec(mask_id, list(getattr(tokenizer, "all_special_ids", ()) or ()), len(tokenizer))


def mask_tokens(ids: torch.Tensor, own: torch.Tensor, spec: MaskingSpec,
                generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """`(B, T)` ids -> (masked ids, targets), choosing max(1, round(MASK_SHARE n)) of each row's n own tokens.

    Draw order is fixed (choice scores, then the mask/random/keep draw, then the random tokens), so a generator
    in a given state always gives the same masks."""
    scores = torch.rand(ids.shape, generator=generator).masked_fill(~own, 2.0)      # (B, T) own tokens < 1
    n_own = own.sum(1, keepdim=True)
    wanted = torch.clamp(torch.round(n_own * MASK_SHARE), min=1).minimum(n_own)     # (B, 1)
    rank = scores.argsort(1).argsort(1)                                             # (B, T) 0 = lowest score
    chosen = (rank < wanted) & own
    kind = torch.rand(ids.shape, generator=generator)
    random_ids = spec.replacements[torch.randint(len(spec.replacements), ids.shape, generator=generator)]
    masked = torch.where(chosen & (kind < MASKED), torch.full_like(ids, spec.mask_id), ids)
    masked = torch.where(chosen & (kind >= MASKED) & (kind < MASKED + RANDOM), random_ids, masked)
    targets = torch.where(chosen, ids, torch.full_like(ids, IGNORE_INDEX))
    return masked, targets


def fixed_masks(rows: list[list[int]], spec: MaskingSpec) -> tuple[list[list[int]], list[list[int]]]:
    """Each example masked with a generator seeded by its own ids: (masked ids, targets) per example."""
    masked_rows, target_rows = [], []
    for row in rows:
        ids = torch.tensor([row], dtype=torch.long)                                 # (1, T)
        seed = zlib.crc32(np.asarray(row, dtype=np.int64).tobytes()) ^ _SALT
        own = ~torch.isin(ids, spec.special)
        masked, targets = mask_tokens(ids, own, spec, torch.Generator().manual_seed(seed))
        masked_rows.append(masked[0].tolist())
        target_rows.append(targets[0].tolist())
    return masked_rows, target_rows


def make_mlm_masking(spec: MaskingSpec) -> Augment:
    """The training batches' transform: the batch's own tokens masked afresh; the new targets go out as `labels`
    (the batch's targets, and the model's input that says where to compute the vocabulary's logits)."""
    def remask(inputs: dict[str, torch.Tensor], generator: torch.Generator) -> dict[str, torch.Tensor]:
        labels = inputs["labels"]
        original = torch.where(labels != IGNORE_INDEX, labels, inputs["input_ids"])
        own = inputs["attention_mask"].bool() & ~torch.isin(original, spec.special)
        masked, targets = mask_tokens(original, own, spec, generator)
        return {**inputs, "input_ids": masked, "labels": targets}

    return remask
