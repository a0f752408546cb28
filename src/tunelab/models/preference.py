"""A decoder LM that scores preference pairs: each reply's summed log-probability, in one forward pass per pair.

A pair is one row of token ids: the prompt, the chosen reply, then the rejected reply (the inputs `prompt_tokens`
and `chosen_tokens` say where each part starts, the row's length where it ends). Both replies attend to the prompt
and to themselves only (a 4-D attention mask), and the rejected reply's positions continue from the prompt's as the
chosen's do, so each reply is scored as if it followed the prompt alone (the same log-probabilities as two separate
sequences, tested) while the prompt, most of a pair's tokens, is computed once instead of twice.

Rows are moved to the right edge of the batch (left padding), so every row's replies end at the last position and
the LM head (a vocabulary-sized projection) runs on the last `longest replies + 1` positions only. The first token
of the rejected reply is predicted at the prompt's last position, as the chosen reply's first token is.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from tunelab.models.causal_lm import CausalLMTaskModel

__all__ = ["PreferenceLMTaskModel", "PairLayout", "pair_layout", "pair_attention_mask", "reply_logprobs"]

PROMPT, CHOSEN, REJECTED, PAD = 0, 1, 2, 3  # the segment of a position


@dataclass(frozen=True)
class PairLayout:
    source: torch.Tensor     # (B, T) index into the right-padded row of the token at each position
    local: torch.Tensor      # (B, T) position within the row's own tokens (negative on the left padding)
    segments: torch.Tensor   # (B, T) PROMPT, CHOSEN, REJECTED or PAD
    positions: torch.Tensor  # (B, T) position ids: the rejected reply's restart where the chosen's started
    prompt: torch.Tensor     # (B,) prompt tokens
    chosen: torch.Tensor     # (B,) chosen-reply tokens
    lengths: torch.Tensor    # (B,) all of the row's tokens
    keep: int                # positions the LM head runs on, counted from the right


def pair_layout(lengths: torch.Tensor, prompt: torch.Tensor, chosen: torch.Tensor, width: int) -> PairLayout:
    """Where everything is once each row (right-padded to `width`) is moved to the right edge."""
    t = torch.arange(width, device=lengths.device)[None]                           # (1, T)
    local = t - (width - lengths)[:, None]                                          # (B, T)
    segments = torch.full_like(local, PAD)
    segments = torch.where(local >= 0, torch.full_like(local, PROMPT), segments)
    segments = torch.where(local >= prompt[:, None], torch.full_like(local, CHOSEN), segments)
    segments = torch.where(local >= (prompt + chosen)[:, None], torch.full_like(local, REJECTED), segments)
    positions = torch.where(segments == REJECTED, local - chosen[:, None], local).clamp(min=0)
    keep = int((lengths - prompt).max()) + 1
    return PairLayout(source=local.clamp(min=0), local=local, segments=segments, positions=positions, prompt=prompt,
                      chosen=chosen, lengths=lengths, keep=keep)


def pair_attention_mask(segments: torch.Tensor, network: nn.Module) -> torch.Tensor:
    """`(B, 1, T, T)`: causal, and a position sees the prompt and its own segment only (padding sees padding, so
    no row of the softmax is empty). Boolean (True: attend) for SDPA and the masks transformers builds for it;
    additive floats for the eager implementation, which adds the mask to the scores."""
    width = segments.shape[1]
    causal = torch.ones(width, width, dtype=torch.bool, device=segments.device).tril()       # (T, T)
    q, k = segments[:, :, None], segments[:, None, :]
    allowed = (causal[None] & ((k == PROMPT) | (k == q)))[:, None]                         # (B, 1, T, T)
    if getattr(getattr(network, "config", None), "_attn_implementation", None) != "eager":
        return allowed
    dtype = next(network.parameters()).dtype
    return torch.zeros(allowed.shape, dtype=dtype, device=allowed.device).masked_fill(~allowed, torch.finfo(dtype).min)


def reply_logprobs(logits: torch.Tensor, ids: torch.Tensor, layout: PairLayout) -> torch.Tensor:
    """`(B, 2)`: the summed log-probabilities of the chosen and the rejected reply, from `(B, K, V)` logits at the
    last K positions of the right-aligned `(B, T)` ids."""
    width, keep = ids.shape[1], logits.shape[1]
    t = torch.arange(width - keep, width, device=ids.device)                       # (K,) absolute positions
    u = layout.local[:, width - keep:]                                              # (B, K) row-local positions
    p, c, n = layout.prompt[:, None], layout.chosen[:, None], layout.lengths[:, None]
    following = ids[:, (t + 1).clamp(max=width - 1)]                                # (B, K) the next token
    first_rejected = ids.gather(1, (width - n + p + c).clamp(max=width - 1))        # (B, 1)
    chosen_at = (u >= p - 1) & (u <= p + c - 2)
    rejected_at = (u == p - 1) | ((u >= p + c) & (u <= n - 2))
    rejected_target = torch.where(u == p - 1, first_rejected.expand_as(u), following)
    logp = F.log_softmax(logits.float(), dim=-1)                                    # (B, K, V)
    chosen_lp = logp.gather(2, following[..., None]).squeeze(-1).masked_fill(~chosen_at, 0.0).sum(1)
    rejected_lp = logp.gather(2, rejected_target[..., None]).squeeze(-1).masked_fill(~rejected_at, 0.0).sum(1)
    return torch.stack((chosen_lp, rejected_lp), dim=1)


class PreferenceLMTaskModel(CausalLMTaskModel):
    """A causal LM whose output is `(B, 2)`: log pi(chosen | prompt) and log pi(rejected | prompt), each summed over
    the reply's tokens (its end-of-turn token included). Inputs: `input_ids` and `attention_mask` `(B, T)` (prompt,
    chosen, rejected, right-padded), `prompt_tokens` and `chosen_tokens` `(B,)`. Given plain text inputs, it is the
    causal LM it wraps (next-token logits), as a merged export checks it."""

    def _forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        if "prompt_tokens" not in inputs:
            return super()._forward(inputs)
        ids = inputs["input_ids"]
        layout = pair_layout(inputs["attention_mask"].sum(1), inputs["prompt_tokens"], inputs["chosen_tokens"],
                             ids.shape[1])
        ids = ids.gather(1, layout.source)                                          # (B, T) right-aligned
        logits = self.network(input_ids=ids, attention_mask=pair_attention_mask(layout.segments, self.network),
                              position_ids=layout.positions, use_cache=False, logits_to_keep=layout.keep).logits
        return reply_logprobs(logits, ids, layout)
