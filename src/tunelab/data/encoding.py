"""Tokenise once, then serve length-bucketed, dynamically padded batches.

Pre-tokenising every split once means epochs, evaluation and prediction never tokenise again. Batches
group examples of similar length (shuffled between buckets, deterministic per seed) so padding, and
the wasted compute it costs, stays small.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator, Optional

import numpy as np
import torch

from tunelab.data.records import Record

__all__ = ["EncodedSplit", "Batch", "encode_texts", "iterate_batches"]

BUCKET_FACTOR = 50  # batches per sorting window: large enough to cut padding, small enough to keep randomness


@dataclass
class EncodedSplit:
    input_ids: list[list[int]]
    targets: Optional[torch.Tensor]
    records: list[Record]

    def __len__(self) -> int:
        return len(self.input_ids)


@dataclass
class Batch:
    input_ids: torch.Tensor       # (B, T) long
    attention_mask: torch.Tensor  # (B, T) long
    targets: Optional[torch.Tensor]
    indices: torch.Tensor         # (B,) positions in the split, to restore order
    prefix_hidden: Optional[torch.Tensor] = None  # (B, T, H) cached input of block `start_block`, if served
    start_block: int = 0

    def to(self, device: torch.device) -> "Batch":
        move = lambda t: None if t is None else t.to(device, non_blocking=True)  # noqa: E731
        return Batch(move(self.input_ids), move(self.attention_mask), move(self.targets), self.indices,
                     move(self.prefix_hidden), self.start_block)

    def model_inputs(self) -> tuple[tuple[torch.Tensor, torch.Tensor], dict[str, Any]]:
        """Positional and keyword arguments of `TaskModel.forward` for this batch."""
        served = {} if self.prefix_hidden is None else {"prefix_hidden": self.prefix_hidden, "start_block": self.start_block}
        return (self.input_ids, self.attention_mask), served

    def __len__(self) -> int:
        return int(self.input_ids.shape[0])


def encode_texts(texts: list[str], tokenizer: Any, max_length: int) -> list[list[int]]:
    """Token ids per text, truncated to `max_length` (special tokens included)."""
    encoded = tokenizer(texts, truncation=True, max_length=max_length, padding=False,
                        return_attention_mask=False, return_token_type_ids=False)
    return [list(ids) for ids in encoded["input_ids"]]


def iterate_batches(split: EncodedSplit, batch_size: int, *, pad_id: int, shuffle: bool, seed: int = 0,
                    epoch: int = 0) -> Iterator[Batch]:
    """Yield batches; with `shuffle`, order depends only on (seed, epoch), so a run is repeatable."""
    for chunk in batch_order(split, batch_size, shuffle=shuffle, seed=seed, epoch=epoch):
        yield collate(split, chunk, pad_id)


def batch_order(split: EncodedSplit, batch_size: int, *, shuffle: bool, seed: int = 0, epoch: int = 0) -> list[np.ndarray]:
    lengths = np.fromiter((len(ids) for ids in split.input_ids), dtype=np.int64, count=len(split))
    if not shuffle:
        order = np.argsort(-lengths, kind="stable")
        return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(len(split))
    window = batch_size * BUCKET_FACTOR
    batches: list[np.ndarray] = []
    for start in range(0, len(order), window):
        part = order[start:start + window]
        part = part[np.argsort(-lengths[part], kind="stable")]
        batches.extend(part[i:i + batch_size] for i in range(0, len(part), batch_size))
    return [batches[i] for i in rng.permutation(len(batches))]


def collate(split: EncodedSplit, indices: np.ndarray, pad_id: int) -> Batch:
    rows = [split.input_ids[i] for i in indices]
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, :len(row)] = torch.tensor(row, dtype=torch.long)
        mask[i, :len(row)] = 1
    index = torch.as_tensor(indices, dtype=torch.long)
    targets = None if split.targets is None else split.targets[index]
    return Batch(ids, mask, targets, index)
