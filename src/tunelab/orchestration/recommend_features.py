"""One frozen forward pass of a backbone over a sample of the training split, keeping the pooled features
entering every LayerStack depth: what recommend scores. Nothing per token is kept past its batch, so a
backbone's depth curve costs one eval-mode forward pass and a few MiB, whatever the depth."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch

from tunelab.config.schema import RunConfig
from tunelab.data.encoding import CPU_FORWARD_COST_TOKENS, EncodedSplit, iterate_batches
from tunelab.inference.precision import autocast_for
from tunelab.models.prefix import capture_block_inputs
from tunelab.orchestration.prepare import Prepared

__all__ = ["DepthFeatures", "depth_features"]


@dataclass
class DepthFeatures:
    mean: dict[int, np.ndarray]   # depth k (0: the embeddings, N: the last block's output) -> (n, H) mean-pooled
    cls: Optional[np.ndarray]     # (n, H): the first token's state at depth N, for the head's pooling choice (text)
    labels: np.ndarray            # (n,) class indices
    num_blocks: int
    seconds: float


def depth_features(prepared: Prepared, config: RunConfig, split: EncodedSplit) -> DepthFeatures:
    """Pooled features of `split` at every depth of the prepared backbone, in eval mode and the run's precision."""
    started = time.perf_counter()
    model = prepared.build_model(config).to(prepared.device).eval()
    n_blocks = model.layer_stack.num_blocks
    depths = list(range(n_blocks + 1))
    pooled: dict[int, list[tuple[torch.Tensor, torch.Tensor]]] = {k: [] for k in depths}
    cls: list[tuple[torch.Tensor, torch.Tensor]] = []
    pad_id = getattr(prepared.tokenizer, "pad_token_id", None) or 0
    cost = CPU_FORWARD_COST_TOKENS if prepared.device.type == "cpu" and split.has_tokens else None
    with torch.no_grad(), autocast_for(prepared.device, config.train.precision):
        for batch in iterate_batches(split, config.train.batch_size * 2, pad_id=pad_id, shuffle=False,
                                     forward_cost_tokens=cost):
            moved = batch.to(prepared.device)
            captured = capture_block_inputs(model, depths, **moved.inputs)
            for k, hidden in captured.items():
                pooled[k].append((batch.indices, _pool(hidden.float(), moved.attention_mask)))
            if moved.attention_mask is not None:
                cls.append((batch.indices, captured[n_blocks][:, 0].float()))
    assert split.targets is not None
    return DepthFeatures(mean={k: _in_order(rows, len(split)) for k, rows in pooled.items()},
                         cls=_in_order(cls, len(split)) if cls else None, labels=split.targets.long().numpy(),
                         num_blocks=n_blocks, seconds=time.perf_counter() - started)


def _pool(hidden: torch.Tensor, mask: Optional[torch.Tensor]) -> torch.Tensor:
    """(B, H): the mean over the tokens a mask keeps (B, T, H), or over the positions of a feature map (B, C, H, W)."""
    if hidden.dim() == 4:
        return hidden.mean(dim=(2, 3))
    if mask is None:
        return hidden.mean(dim=1)
    weights = mask.unsqueeze(-1).float()  # (B, T, 1)
    return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)


def _in_order(rows: list[tuple[torch.Tensor, torch.Tensor]], n: int) -> np.ndarray:
    """Batches of (example indices, (B, H) features) back in the split's order."""
    out = np.zeros((n, rows[0][1].shape[1]), dtype=np.float32)
    for indices, values in rows:
        out[indices.numpy()] = values.numpy()
    return out
