"""Batched forward passes over a split: outputs in the split's order, and the mean loss where targets exist.

Training's evaluation (with batches that carry cached activations), `predict`, `eval` and serving call
`predict_split`; nothing else runs a model for outputs, so every caller gets the same precision, loss and
per-task reduction.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Optional

import torch
from torch import nn

from tunelab.data.encoding import CPU_FORWARD_COST_TOKENS, Batch, EncodedSplit, iterate_batches
from tunelab.data.records import Record
from tunelab.inference.precision import autocast_for
from tunelab.tasks.base import Outputs, Predictions, Task

__all__ = ["predict_logits", "predict_split", "encode_split", "is_labelled"]


def encode_split(records: list[Record], tokenizer: Any, max_length: int, task: Task, label_names: list[str],
                 with_targets: bool = True, train: bool = False) -> EncodedSplit:
    """The task encodes its own examples (token ids, per-token targets, pixels, ...); `train` turns on the
    task's training-time augmentation, if it has one."""
    return task.encode(records, tokenizer, max_length, label_names, with_targets=with_targets, train=train)


def predict_split(model: nn.Module, split: EncodedSplit, task: Task, label_names: list[str], *, batch_size: int,
                  pad_id: int, device: torch.device, precision: str = "fp32", loss_fn: Optional[nn.Module] = None,
                  batches: Optional[Iterable[Batch]] = None) -> tuple[Predictions, float]:
    """The task's predictions for a whole split, and the mean loss (NaN without `loss_fn` or targets).
    `batches`: the split's batches when the caller makes them (the trainer's carry cached activations)."""
    labelled = is_labelled(split)
    if batches is None:
        cost = CPU_FORWARD_COST_TOKENS if device.type == "cpu" else None  # a server's batch: mixed lengths
        batches = iterate_batches(split, batch_size, pad_id=pad_id, shuffle=False, forward_cost_tokens=cost)
    outputs, loss = predict_logits(model, batches, len(split), device, precision,
                                   loss_fn=loss_fn if labelled else None,
                                   reduce=task.reduce_outputs if labelled else None)
    return task.predict(outputs, label_names, split), loss


def is_labelled(split: EncodedSplit) -> bool:
    """Whether the split carries targets (per example or per token), so loss and metrics apply."""
    return split.targets is not None or split.token_targets is not None


@torch.no_grad()
def predict_logits(model: nn.Module, batches: Iterable[Batch], n: int, device: torch.device,
                   precision: str = "fp32", loss_fn: Optional[nn.Module] = None,
                   reduce: Optional[Callable[[torch.Tensor, Batch], torch.Tensor]] = None) -> tuple[Outputs, float]:
    """Outputs for a whole split in the split's original order, and the mean loss over its batches (NaN
    without `loss_fn` or targets); the model is left in eval mode.

    Per-example outputs `(B, C)` are gathered into one `(N, C)` tensor; per-token outputs `(B, T, C)` into
    a list of `(T_i, C)` tensors with the padding cut off (their lengths differ between batches). A task whose
    outputs are too large to keep (a causal LM's vocabulary-sized logits) passes `reduce`, which turns each
    batch's outputs into `(B, C)` per-example values after the loss is taken.
    """
    model.eval()
    rows: list[Optional[torch.Tensor]] = [None] * n
    stacked: Optional[torch.Tensor] = None
    loss_sum, loss_weight = 0.0, 0
    # one autocast region for the whole split: autocast casts every weight to bf16 once per region, and a
    # region per batch recast MiniLM's weights before each forward pass (6 ms of a 1 x 32-token forward of 11)
    with autocast_for(device, precision):
        for batch in batches:
            batch = batch.to(device)
            args, kwargs = batch.model_inputs()
            logits = model(*args, **kwargs).float()
            with torch.autocast(device.type, enabled=False):  # loss and reduction in fp32, as before
                if loss_fn is not None and batch.targets is not None:
                    loss_sum += float(loss_fn(logits, batch.targets)) * len(batch)
                    loss_weight += len(batch)
                if reduce is not None:
                    logits = reduce(logits, batch)  # (B, C)
            logits = logits.cpu()
            if logits.dim() == 2:
                stacked = torch.empty((n, logits.shape[-1])) if stacked is None else stacked
                stacked[batch.indices] = logits
            else:
                lengths = batch.attention_mask.sum(1).tolist()
                for row, i, length in zip(logits, batch.indices.tolist(), lengths):
                    rows[i] = row[:length]  # (T_i, C)
    loss = loss_sum / loss_weight if loss_weight else float("nan")
    if stacked is not None or n == 0:
        return (stacked if stacked is not None else torch.empty((0, 0))), loss
    return [r if r is not None else torch.empty(0) for r in rows], loss
