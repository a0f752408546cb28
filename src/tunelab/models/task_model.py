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

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, *,
                prefix_hidden: Optional[torch.Tensor] = None, start_block: int = 0) -> torch.Tensor:
        """`(B, T)` token ids and mask -> `(B, num_outputs)` logits.

        With `prefix_hidden` `(B, T, H)` (the cached input of block `start_block`), the embeddings and
        blocks `[0, start_block)` are not run: the activation cache serves them (see models/prefix.py).
        """
        if prefix_hidden is not None:
            from tunelab.models.prefix import served_prefix

            with served_prefix(self, start_block, prefix_hidden):
                return self._forward(input_ids, attention_mask)
        return self._forward(input_ids, attention_mask)

    def _forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        if self.head is None:
            return self.network(input_ids=input_ids, attention_mask=attention_mask).logits
        hidden = self.network(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state  # (B, T, H)
        return self.head(hidden, attention_mask)
