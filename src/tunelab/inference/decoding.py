"""Greedy decoding around a one-step decoder graph (export/decoder.py's signature), for exported LMs.

It follows what transformers' `generate` does for a left-padded batch with `do_sample=False`: every row gets
the argmax token, a row that has written a stop token gets the pad token from then on (its mask still grows),
and the loop ends when every row has stopped or `max_new_tokens` tokens were written. So an export writes the
replies its run writes, which export's parity check confirms on the run's test prompts.
"""

from __future__ import annotations

from typing import Callable, Optional, Sequence

import torch

__all__ = ["Step", "greedy_generate", "empty_cache"]

# (input_ids, attention_mask, cache) -> (last-position logits (B, V), the cache grown by the new tokens)
Step = Callable[[torch.Tensor, torch.Tensor, list[torch.Tensor]], tuple[torch.Tensor, list[torch.Tensor]]]


def empty_cache(batch: int, layers: int, kv_heads: int, head_dim: int) -> list[torch.Tensor]:
    """The cache a decoding starts from: one slot per layer, hidden by a 0 in the mask (see export/decoder.py)."""
    return [torch.zeros((batch, kv_heads, 1, head_dim)) for _ in range(2 * layers)]


@torch.no_grad()
def greedy_generate(step: Step, input_ids: torch.Tensor, attention_mask: torch.Tensor, cache: list[torch.Tensor], *,
                    max_new_tokens: int, stop_ids: Sequence[int], pad_id: int,
                    forced: Optional[torch.Tensor] = None,
                    on_logits: Optional[Callable[[torch.Tensor], None]] = None) -> torch.Tensor:
    """`(B, T + n)`: the prompts and the n <= max_new_tokens tokens written after them. `forced` `(B, m)`: feed
    these tokens instead of the argmax (the parity check replays one model's tokens through another);
    `on_logits` sees every step's `(B, V)` logits."""
    batch = input_ids.shape[0]
    mask = torch.cat([torch.zeros((batch, 1), dtype=attention_mask.dtype), attention_mask], dim=1)
    stops = torch.tensor(list(stop_ids), dtype=torch.long)
    done = torch.zeros(batch, dtype=torch.bool)
    written: list[torch.Tensor] = []
    feed = input_ids
    steps = max_new_tokens if forced is None else min(max_new_tokens, forced.shape[1])
    for index in range(steps):
        logits, cache = step(feed, mask, cache)
        if on_logits is not None:
            on_logits(logits)
        token = logits.argmax(dim=-1) if forced is None else forced[:, index]
        token = torch.where(done, torch.full_like(token, pad_id), token)
        written.append(token)
        done |= torch.isin(token, stops)
        if bool(done.all()) and forced is None:
            break
        feed = token[:, None]
        mask = torch.cat([mask, torch.ones((batch, 1), dtype=mask.dtype)], dim=1)
    new = torch.stack(written, dim=1) if written else input_ids.new_zeros((batch, 0))
    return torch.cat([input_ids, new], dim=1)
