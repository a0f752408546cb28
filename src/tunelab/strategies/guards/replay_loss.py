"""The replay guard's loss term: a few reference examples per step, each source through its own head."""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from typing import Any, Callable, Optional

import numpy as np
import torch
from torch import nn
from torch.func import functional_call

from tunelab.data.encoding import Batch, EncodedSplit, collate
from tunelab.errors import ModelError

__all__ = ["ReplaySource", "ReplayTerm", "state_bytes"]


@dataclass
class ReplaySource:
    """Examples to replay, the loss they are scored with, and the head they go through: `head` maps parameter
    names of the model's head to another task's trained (frozen) tensors; None keeps the model's own head."""

    name: str
    split: EncodedSplit
    loss_fn: nn.Module
    pad_id: int
    head: Optional[dict[str, torch.Tensor]] = None


class ReplayTerm:
    """`LossTerm.compute`: (k / B) * the mean loss of k examples drawn over all sources (k = round(ratio * B))."""

    def __init__(self, ratio: float) -> None:
        self.ratio = ratio
        self.sources: list[ReplaySource] = []
        self.seed = 0
        self.autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext
        self.seconds, self.calls, self.examples, self.last = 0.0, 0, 0, 0.0

    def set_sources(self, sources: list[ReplaySource], seed: int,
                    autocast: Callable[[], contextlib.AbstractContextManager]) -> None:
        if not sources or not any(len(s.split) for s in sources):
            raise ModelError("guard replay: no reference examples to replay; give guard.runs or guard.data")
        self.sources, self.seed, self.autocast = [s for s in sources if len(s.split)], seed, autocast

    def draw(self, batch: Batch) -> dict[int, np.ndarray]:
        """Source index -> example indices for this batch, from a generator seeded by the batch's examples."""
        k = max(1, round(self.ratio * len(batch)))
        sizes = np.array([len(s.split) for s in self.sources])
        entropy = [self.seed, *(int(i) for i in batch.indices.tolist())]
        picks = np.random.default_rng(np.random.SeedSequence(entropy)).integers(0, sizes.sum(), size=k)
        which = np.searchsorted(np.cumsum(sizes), picks, side="right")
        starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        return {int(s): np.sort(picks[which == s] - starts[s]) for s in np.unique(which)}

    def __call__(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        if not self.sources:
            raise ModelError("guard replay: its sources were never set; build the run through run_one")
        started = time.perf_counter()
        device = next(model.parameters()).device
        total, count = torch.zeros((), device=device), 0
        for index, rows in self.draw(batch).items():
            source = self.sources[index]
            replayed = collate(source.split, rows, source.pad_id).to(device)
            args, kwargs = replayed.model_inputs()
            with self.autocast():
                logits = (model(*args, **kwargs) if source.head is None else
                          functional_call(model, _on(source.head, device), args, kwargs, strict=False))
            total = total + source.loss_fn(logits.float(), replayed.targets) * len(rows)
            count += len(rows)
        self.seconds += time.perf_counter() - started
        self.calls, self.examples = self.calls + 1, self.examples + count
        term = total / max(count, 1) * (count / len(batch))
        self.last = float(term.detach())
        return term


def state_bytes(sources: list[ReplaySource]) -> int:
    """What the replay keeps in memory: token ids (as Python lists, counted at 8 bytes each) and the heads."""
    ids = sum(len(row) for s in sources for row in s.split.input_ids) * 8
    heads = sum(t.numel() * t.element_size() for s in sources for t in (s.head or {}).values())
    return ids + heads


def _on(head: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    for name, tensor in head.items():
        if tensor.device != device:
            head[name] = tensor.to(device)
    return head
