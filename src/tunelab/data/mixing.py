"""Several tasks' splits as one stream of batches, each batch from one task (a multi-task run).

An epoch has C = sum of ceil(n_i / B) batches: the tasks' single-task epochs together, so the schedule, the
checkpoints and the progress bar count steps as a single-task run of that much data would. How the C batches are
shared between the tasks is the mixing:

- `proportional`: each task its own ceil(n_i / B) batches, every training example once an epoch (sampling in
  proportion to the tasks' sizes);
- `temperature` T (Arivazhagan et al. 2019; T5, Raffel et al. 2020): shares in proportion to n_i^(1/T), rounded by
  largest remainders with at least one batch per task. T = 1 is about proportional and a larger T moves towards
  equal shares: a task with more batches than one pass over its data starts another pass (in an order of its
  own), one with fewer takes the first batches of this epoch's order, a different part of its data every epoch.

The order of an epoch's batches is a permutation of those counts drawn from a generator seeded by (seed, epoch),
and each task's batches come from its own split exactly as in its single-task run, so a run repeats and a resumed
epoch sees the same batches. A one-task mixture is that task's single-task stream.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator, Optional

import numpy as np

from tunelab.data.encoding import Augment, Batch, EncodedSplit

__all__ = ["TaskMixture", "mixing_counts", "MIXINGS"]

MIXINGS = ("proportional", "temperature")
_ORDER_STREAM = 0x6D6978  # "mix": the permutation's generator is apart from the tasks' own (seed, epoch) orders

# a task's batches for one pass over its split: (its split, the pass) -> batches (the trainer's feed makes them,
# with the activation cache's rows where it serves them)
PartBatches = Callable[[EncodedSplit, int], Iterator[Batch]]


def mixing_counts(sizes: list[int], batch_size: int, mixing: str = "proportional",
                  temperature: float = 2.0) -> list[int]:
    """Batches each task gets in an epoch, for tasks of `sizes` training examples (see the module's docstring)."""
    own = [-(-n // batch_size) for n in sizes]
    if mixing == "proportional" or len(sizes) < 2:
        return own
    if mixing != "temperature":
        raise ValueError(f"mixing.name: {mixing!r} is not one of {', '.join(MIXINGS)}")
    total = sum(own)
    weights = np.array([n ** (1.0 / temperature) for n in sizes], dtype=np.float64)
    shares = total * weights / weights.sum()
    counts = np.floor(shares).astype(np.int64)
    remainders = shares - counts
    for i in np.argsort(-remainders, kind="stable")[: total - int(counts.sum())]:
        counts[i] += 1
    for i in np.flatnonzero(counts == 0):  # every task trains: one batch from the task with the most
        counts[int(np.argmax(counts))] -= 1
        counts[i] = 1
    return [int(c) for c in counts]


@dataclass
class TaskMixture:
    """One split (train, validation or test) of every task of a multi-task run, by head name. Training reads it
    as one stream of one-task batches (`batches`); evaluation scores each task's split on its own."""

    parts: dict[str, EncodedSplit]
    mixing: str = "proportional"
    temperature: float = 2.0

    def __post_init__(self) -> None:
        for name, part in self.parts.items():
            part.head = name  # its batches name their head

    def __len__(self) -> int:
        return sum(len(part) for part in self.parts.values())

    @property
    def augment(self) -> Optional[Augment]:
        """A task's training-time augmentation, if any task has one (the activation cache is then off)."""
        return next((part.augment for part in self.parts.values() if part.augment is not None), None)

    def counts(self, batch_size: int) -> dict[str, int]:
        sizes = [len(part) for part in self.parts.values()]
        return dict(zip(self.parts, mixing_counts(sizes, batch_size, self.mixing, self.temperature)))

    def num_batches(self, batch_size: int) -> int:
        return sum(self.counts(batch_size).values())

    def order(self, batch_size: int, seed: int, epoch: int) -> list[str]:
        """The head of each batch of epoch `epoch`, in training order."""
        counts = self.counts(batch_size)
        names = list(counts)
        rng = np.random.default_rng([_ORDER_STREAM, seed, epoch])
        drawn = rng.permutation(np.repeat(np.arange(len(names)), list(counts.values())))
        return [names[i] for i in drawn]

    def batches(self, batch_size: int, part_batches: PartBatches, *, seed: int, epoch: int) -> Iterator[Batch]:
        """Epoch `epoch`'s training batches: each task's own stream, interleaved in `order`."""
        counts = self.counts(batch_size)
        streams = {name: _passes(self.parts[name], counts[name], part_batches) for name in self.parts}
        for name in self.order(batch_size, seed, epoch):
            yield next(streams[name])


def _passes(part: EncodedSplit, count: int, part_batches: PartBatches) -> Iterator[Batch]:
    """`count` batches of one task: its first pass's batches, then another pass's while more are due."""
    draw = 0
    while count > 0:
        before = count
        for batch in part_batches(part, draw):
            yield batch
            count -= 1
            if count == 0:
                return
        if count == before:  # an empty split has no batch to give
            return
        draw += 1

