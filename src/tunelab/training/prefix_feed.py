"""Which cached activations feed the batches of a fit: the activation cache's bookkeeping for one Trainer.

While a plan keeps embeddings + blocks `[0, k)` frozen, every batch of a split carries the stored output
of block k-1 for its examples, so the model runs from block k. This object knows the depth in force, finds
or builds the store of each (split, k) the fit needs before epoch 0, and attaches the rows to each batch;
the trainer only asks it for batches.
"""

from __future__ import annotations

from typing import Iterator, Optional

import torch
from torch import nn

from tunelab.data.encoding import Batch, EncodedSplit, iterate_batches
from tunelab.inference.precision import autocast_for
from tunelab.training.cache import ActivationCache, CachedPrefixStore, CacheUnsupported
from tunelab.training.distributed import SINGLE, Distributed

__all__ = ["PrefixFeed"]


class PrefixFeed:
    def __init__(self, cache: Optional[ActivationCache], *, device: torch.device, pad_id: int, batch_size: int,
                 precision: str, seed: int, dist: Distributed = SINGLE) -> None:
        self.cache, self.dist = cache, dist
        self.device, self.pad_id, self.precision, self.seed = device, pad_id, precision, seed
        # built in training-sized batches: a build is inference over the whole model, and at the evaluation
        # batch size (2x) its attention scores made it the run's peak memory (head-only, BBC News: 956
        # against 790 MiB) for no speed gain on CPU
        self.build_batch_size = batch_size
        self.frozen_k: Optional[int] = None  # embeddings + blocks [0, k) frozen in the current epoch
        # (id(split), k) -> (split, store); the split is kept so its id cannot be reused while stored
        self._stores: dict[tuple[int, int], tuple[EncodedSplit, CachedPrefixStore]] = {}

    def start(self, model: nn.Module, schedule: list[Optional[int]], splits: list[Optional[EncodedSplit]]) -> None:
        """Build (or find) the entries the remaining epochs of this fit will read, before epoch 0 starts."""
        self._stores.clear()
        self.frozen_k = None
        starts = sorted({k for k in schedule if k})
        if self.cache is None or not starts:
            return
        for split in splits:
            if split is not None and len(split):
                self._ensure(model, split, starts)

    def batches(self, model: nn.Module, split: EncodedSplit, batch_size: int, *, shuffle: bool,
                epoch: int = 0, draw: int = 0) -> Iterator[Batch]:
        """Batches of `split`; while a prefix is frozen and cached, each carries its cached hidden states.
        `draw`: another pass over a training split within the epoch (`iterate_batches`)."""
        k = self.frozen_k
        if self.cache is not None and k and (id(split), k) not in self._stores:
            self._ensure(model, split, [k])
        entry = self._stores.get((id(split), k)) if k and self.cache is not None else None
        for batch in iterate_batches(split, batch_size, pad_id=self.pad_id, shuffle=shuffle, seed=self.seed,
                                     epoch=epoch, draw=draw):
            if entry is not None and self.cache is not None:
                width = 1 if batch.input_ids is None else batch.input_ids.shape[1]  # images: one row an example
                batch.prefix_hidden = entry[1].read(batch.indices, width)  # (B, T, H), or an image's (B, C, H, W)
                batch.start_block = k
                self.cache.stats.served_batches += 1
            yield batch

    def _ensure(self, model: nn.Module, split: EncodedSplit, starts: list[int]) -> None:
        """Find or build the stores; under torchrun every rank calls this at the same point of the fit, and the
        processes of each machine build the missing entries together, each its share of the batches."""
        cache = self.cache
        if cache is None:
            return
        try:
            stores = cache.ensure(model, split, starts, device=self.device, pad_id=self.pad_id,
                                  batch_size=self.build_batch_size, autocast=autocast_for(self.device, self.precision),
                                  shard=self.dist if self.dist.active else None)
        except CacheUnsupported as err:
            cache.stats.notes.append(f"activation cache off, recomputing the frozen blocks: {err}")
            self.cache = None
            return
        self._stores.update({(id(split), k): (split, store) for k, store in stores.items()})
