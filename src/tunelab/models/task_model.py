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

    # what building the model did that the user should know (a head created where the checkpoint had none);
    # a run prints them
    notes: tuple[str, ...] = ()

    def __init__(self, network: nn.Module, head: Optional[nn.Module] = None, blocks_path: Optional[str] = None) -> None:
        super().__init__()
        self.network = network
        self.head = head
        inner = None if blocks_path is None else f"network.{blocks_path}"
        self.layer_stack: LayerStack = discover_layer_stack(self, inner)

    @property
    def is_native(self) -> bool:
        return self.head is None

    def forward(self, input_ids: Optional[torch.Tensor] = None, attention_mask: Optional[torch.Tensor] = None, *,
                prefix_hidden: Optional[torch.Tensor] = None, start_block: int = 0, head: Optional[str] = None,
                **inputs: torch.Tensor) -> torch.Tensor:
        """Model inputs by name (`input_ids` + `attention_mask` `(B, T)` for text, `pixel_values` for images)
        -> logits `(B, num_outputs)`, or `(B, T, num_outputs)` for token tasks.

        With `prefix_hidden` `(B, T, H)` (the cached input of block `start_block`), the embeddings and
        blocks `[0, start_block)` are not run: the activation cache serves them (see models/prefix.py).
        `head`: which head of a multi-task model (a HeadSet) runs on the backbone's output.
        """
        if input_ids is not None:
            inputs["input_ids"] = input_ids
        if attention_mask is not None:
            inputs["attention_mask"] = attention_mask
        # a multi-task batch: its head on the backbone (subclasses with their own head take no `head`)
        run = (lambda: self._forward(inputs)) if head is None else (lambda: self._forward(inputs, head=head))
        if prefix_hidden is not None:
            from tunelab.models.prefix import served_prefix

            with served_prefix(self, start_block, prefix_hidden):
                return run()
        return run()

    def _forward(self, inputs: dict[str, torch.Tensor], *, head: Optional[str] = None) -> torch.Tensor:
        if self.head is None:
            return self.network(**inputs).logits
        out = self.network(**inputs)
        hidden = getattr(out, "last_hidden_state", out)  # (B, T, H) for text encoders; a tensor for plain backbones
        return (self.head if head is None else self.head[head])(hidden, inputs.get("attention_mask"))

    def head_view(self, name: str) -> "TaskModel":
        """The model of one head of a multi-task model: this backbone (the same modules, not a copy) and the head
        `name`, an ordinary single-head TaskModel for prediction."""
        view = TaskModel(self.network, self.head[name], blocks_path=self.layer_stack.blocks_path.removeprefix("network."))
        return view.train(self.training)
