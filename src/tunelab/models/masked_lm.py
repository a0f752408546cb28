"""A masked language model as a TaskModel: the vocabulary's logits computed at the masked positions only.

About 15% of the positions are masked, and the MLM head ends in a vocabulary-sized projection (30,522 x 384 for
MiniLM: per position about as many multiply-adds as a whole MiniLM block), so the head runs on the masked
positions' hidden states alone, `(M, H) -> (M, V)` in row-major order of `labels != IGNORE_INDEX`. The loss and
the evaluation take the targets in the same order from the same mask, so the two cannot disagree. A model
whose head is not one module beside its base model gets every position's logits, then the masked ones.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn
from torch.nn import functional as F

from tunelab.data.encoding import IGNORE_INDEX
from tunelab.models.task_model import TaskModel

__all__ = ["MaskedLMTaskModel", "MaskedTokenLoss", "masked_token_stats", "mlm_head"]


def mlm_head(network: nn.Module) -> Optional[nn.Module]:
    """The module that maps hidden states to the vocabulary (`cls` for BERT, `lm_head` for RoBERTa) when the
    network is its base model plus that one module, else None."""
    base = network.base_model
    others = [m for _, m in network.named_children() if m is not base and any(True for _ in m.parameters())]
    return others[0] if len(others) == 1 else None


class MaskedLMTaskModel(TaskModel):
    """`AutoModelForMaskedLM` with its own head (the decoder tied to the word embeddings). Given `labels`
    `(B, T)` (IGNORE_INDEX where nothing is masked), returns logits `(M, V)` of the M masked positions; without,
    `(B, T, V)`."""

    def _forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        labels = inputs.pop("labels", None)
        if labels is None:
            return self.network(**inputs).logits
        chosen = labels != IGNORE_INDEX                                  # (B, T)
        head = mlm_head(self.network)
        if head is None:
            return self.network(**inputs).logits[chosen]
        hidden = self.network.base_model(**inputs).last_hidden_state     # (B, T, H)
        return head(hidden[chosen])                                      # (M, V)


class MaskedTokenLoss(nn.Module):
    """Mean cross-entropy over the batch's masked tokens."""

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits.float(), labels[labels != IGNORE_INDEX])


def masked_token_stats(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """`(B, 3)` per example: summed negative log-likelihood of its masked tokens, their count, and how many of
    them the model's most probable token gets right."""
    chosen = labels != IGNORE_INDEX
    rows = chosen.nonzero()[:, 0]                                        # (M,) the example of each masked token
    targets = labels[chosen]
    nll = F.cross_entropy(logits.float(), targets, reduction="none")
    stats = torch.stack((nll, torch.ones_like(nll), (logits.argmax(-1) == targets).float()), dim=1)  # (M, 3)
    return torch.zeros((labels.shape[0], 3), dtype=torch.float32, device=logits.device).index_add_(0, rows, stats)
