"""Pooled features of every LayerStack block, and a language model's loss on plain text: what the forgetting
meter compares between the base and the fine-tuned model.

Both run the model in eval mode without gradients and draw no random numbers, so measuring never changes a
run's training or its random state.
"""

from __future__ import annotations

from typing import Iterable, Optional

import numpy as np
import torch
from torch import nn

from tunelab.data.encoding import Batch
from tunelab.inference.precision import autocast_for

__all__ = ["block_features", "pool_hidden", "text_nll"]


def pool_hidden(hidden: torch.Tensor, attention_mask: Optional[torch.Tensor]) -> torch.Tensor:
    """One vector per example from a block's output: the mean over the real tokens of `(B, T, H)` (over the
    last T positions when a method prepended virtual tokens), the mean over space of `(B, C, H, W)`."""
    hidden = hidden.float()
    if hidden.dim() == 4:
        return hidden.mean(dim=(2, 3))                          # (B, C)
    if hidden.dim() != 3:
        return hidden.flatten(1)
    if attention_mask is None:
        return hidden.mean(dim=1)
    hidden = hidden[:, -attention_mask.shape[1]:]               # prompt tuning's virtual tokens come first
    mask = attention_mask.to(hidden.dtype).unsqueeze(-1)        # (B, T, 1)
    return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)  # (B, H)


@torch.no_grad()
def block_features(model: nn.Module, batches: Iterable[Batch], n: int, device: torch.device,
                   precision: str = "fp32") -> list[np.ndarray]:
    """Pooled output of each block, `(n, H_i)` per block in LayerStack order, rows in the split's order."""
    blocks = model.get_submodule(model.layer_stack.blocks_path)
    rows: list[Optional[np.ndarray]] = [None] * len(blocks)
    current: dict[str, object] = {}

    def hook(index: int):
        def keep(_module: nn.Module, _args: tuple, output: object) -> None:
            hidden = output[0] if isinstance(output, (tuple, list)) else output
            pooled = pool_hidden(hidden, current["mask"]).cpu().numpy()  # (B, H)
            if rows[index] is None:
                rows[index] = np.zeros((n, pooled.shape[1]), dtype=np.float32)
            rows[index][current["indices"]] = pooled
        return keep

    handles = [block.register_forward_hook(hook(i)) for i, block in enumerate(blocks)]
    model.eval()
    try:
        for batch in batches:
            batch = batch.to(device)
            current.update(mask=batch.attention_mask, indices=batch.indices.cpu().numpy())
            args, kwargs = batch.model_inputs()
            with autocast_for(device, precision):
                model(*args, **kwargs)
    finally:
        for handle in handles:
            handle.remove()
    return [r if r is not None else np.zeros((n, 0), dtype=np.float32) for r in rows]


@torch.no_grad()
def text_nll(model: nn.Module, chunks: list[list[int]], device: torch.device, precision: str = "fp32",
             batch_size: int = 8) -> tuple[float, int]:
    """Summed next-token negative log-likelihood (nats) of token-id chunks of equal length under a causal LM
    (`model(ids, mask)` -> `(B, T, V)` logits), and the number of predicted tokens."""
    model.eval()
    total, count = 0.0, 0
    for start in range(0, len(chunks), batch_size):
        ids = torch.tensor(chunks[start:start + batch_size], device=device)   # (B, T)
        with autocast_for(device, precision):
            logits = model(ids, torch.ones_like(ids)).float()                 # (B, T, V)
        loss = nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1), ids[:, 1:].flatten(), reduction="sum")
        total, count = total + float(loss), count + ids[:, 1:].numel()
    return total, count
