"""A decoder LM as a TaskModel: scoring only the positions that predict a target, and greedy generation.

In instruction tuning most tokens are prompt, and the loss ignores them. The LM head (a vocabulary-sized
projection, 49k x 576 for SmolLM2) is then computed only at positions whose next token is a target:
the union over the batch, passed to transformers as `logits_to_keep`. The loss takes the same positions
from the same function, so the two cannot disagree.
"""

from __future__ import annotations

import contextlib
from typing import Iterable, Optional

import torch
from torch import nn
from torch.nn import functional as F

from tunelab.data.encoding import IGNORE_INDEX
from tunelab.models.task_model import TaskModel

__all__ = ["CausalLMTaskModel", "scored_positions", "NextTokenLoss", "next_token_nll", "generate_ids", "left_padded"]


def scored_positions(labels: torch.Tensor) -> torch.Tensor:
    """`(P,)` positions t (any row) whose next token `labels[:, t + 1]` is a target."""
    return (labels[:, 1:] != IGNORE_INDEX).any(0).nonzero().squeeze(1)


def _next_targets(labels: torch.Tensor) -> torch.Tensor:
    """`(B, P)` the targets predicted at `scored_positions(labels)`; IGNORE_INDEX where a row has none."""
    return labels[:, scored_positions(labels) + 1]


class CausalLMTaskModel(TaskModel):
    """`AutoModelForCausalLM` with its own (usually tied) LM head. Given `labels` `(B, T)` (IGNORE_INDEX on
    prompt and padding), returns logits `(B, P, V)` at the scored positions only; without, `(B, T, V)`."""

    def _forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        labels = inputs.pop("labels", None)
        if labels is None:
            return self.network(**inputs, use_cache=False).logits
        return self.network(**inputs, use_cache=False, logits_to_keep=scored_positions(labels)).logits


class NextTokenLoss(nn.Module):
    """Mean cross-entropy over every target token of the batch (a long response weighs more than a short one,
    as in the usual causal-LM loss)."""

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        targets = _next_targets(labels)
        return F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), targets.reshape(-1),
                               ignore_index=IGNORE_INDEX)


def next_token_nll(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """`(B, 2)`: summed negative log-likelihood of each row's targets and their count, for perplexity."""
    targets = _next_targets(labels)
    nll = F.cross_entropy(logits.float().transpose(1, 2), targets, ignore_index=IGNORE_INDEX, reduction="none")  # (B, P)
    counted = targets != IGNORE_INDEX
    return torch.stack((nll.masked_fill(~counted, 0).sum(1), counted.sum(1).float()), dim=1)


def left_padded(prompts: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """`(B, T)` ids and mask of prompts padded on the left, so every row's next token is at position T."""
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for row, prompt in enumerate(prompts):
        ids[row, width - len(prompt):] = torch.tensor(prompt, dtype=torch.long)
        mask[row, width - len(prompt):] = 1
    return ids, mask


@torch.no_grad()
def generate_ids(model: TaskModel, prompts: list[list[int]], *, max_new_tokens: int, stop_ids: list[int], pad_id: int,
                 batch_size: int, device: torch.device,
                 autocast: Optional[contextlib.AbstractContextManager] = None) -> list[tuple[list[int], bool]]:
    """Greedy continuation of each prompt: (new token ids up to, not including, the first stop token; whether a
    stop token came within `max_new_tokens`). Prompts are left-padded in length-sorted batches."""
    model.eval()
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    out: list[Optional[tuple[list[int], bool]]] = [None] * len(prompts)
    for start in range(0, len(order), batch_size):
        chunk = order[start:start + batch_size]
        ids, mask = left_padded([prompts[i] for i in chunk], pad_id)
        width = ids.shape[1]
        with autocast or contextlib.nullcontext():
            generated = model.network.generate(input_ids=ids.to(device), attention_mask=mask.to(device),
                                               max_new_tokens=max_new_tokens, do_sample=False, num_beams=1,
                                               eos_token_id=stop_ids, pad_token_id=pad_id,
                                               temperature=None, top_p=None, top_k=None)
        for row, i in enumerate(chunk):
            out[i] = _until_stop(generated[row, width:].tolist(), set(stop_ids))
    return [o if o is not None else ([], False) for o in out]


def _until_stop(tokens: Iterable[int], stops: set[int]) -> tuple[list[int], bool]:
    kept: list[int] = []
    for token in tokens:
        if token in stops:
            return kept, True
        kept.append(token)
    return kept, False

