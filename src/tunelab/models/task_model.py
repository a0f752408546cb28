"""TaskModel = backbone + head, with one forward signature for every strategy and task."""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from tunelab.models.layerstack import LayerStack, discover_layer_stack

__all__ = ["TaskModel"]


class TaskModel(nn.Module):
    """Wraps either a Hugging Face model with its native task head (`head is None`) or a bare backbone
    plus a tunelab :class:`PoolingHead`. Parameter names are stable (`network.*`, `head.*`) so plans,
    checkpoints and the LayerStack can address them.
    """

    def __init__(self, network: nn.Module, head: Optional[nn.Module] = None, blocks_path: Optional[str] = None) -> None:
        super().__init__()
        self.network = network
        self.head = head
        inner = None if blocks_path is None else f"network.{blocks_path}"
        self.layer_stack: LayerStack = discover_layer_stack(self, inner)

    @property
    def is_native(self) -> bool:
        return self.head is None

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """`(B, T)` token ids and mask -> `(B, num_outputs)` logits."""
        if self.head is None:
            return self.network(input_ids=input_ids, attention_mask=attention_mask).logits
        hidden = self.network(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state  # (B, T, H)
        return self.head(hidden, attention_mask)
