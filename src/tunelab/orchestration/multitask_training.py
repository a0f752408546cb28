"""The Trainer of a multi-task run: the one `Trainer` and its loop, fed a TaskMixture (data/mixing.py).

The loop itself learns only that a batch names its head (`Batch.head`: the model runs that head, `train_step` takes
that head's loss). What differs lives here: the feed turns a mixture into its tasks' own batch streams (each through
the activation cache as a single-task run's would be), and evaluation scores each task's split with its own task,
labels and loss, then gives the tasks' metrics prefixed by their names and the means that early stopping reads.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterator, Optional

from torch import nn

from tunelab.data.encoding import Batch, EncodedSplit
from tunelab.data.mixing import TaskMixture
from tunelab.tasks.base import Predictions
from tunelab.tasks.multitask import MultiTask
from tunelab.training.prefix_feed import PrefixFeed
from tunelab.training.trainer import EvalResult, Trainer

__all__ = ["MultiTaskTrainer", "MixtureResult", "of_heads"]


@dataclass
class MixtureResult(EvalResult):
    """A multi-task split's result: the means and prefixed metrics (`metrics`), and each task's own (`parts`)."""

    parts: dict[str, EvalResult] = field(default_factory=dict)


class MixtureFeed(PrefixFeed):
    """A PrefixFeed that takes a TaskMixture as well as a split: the mixture's tasks' splits each get their cache
    entries, and its training batches are each task's own, in the mixing's order."""

    def start(self, model: nn.Module, schedule: list[Optional[int]], splits: list[Any]) -> None:
        parts = [part for split in splits if split is not None
                 for part in (split.parts.values() if isinstance(split, TaskMixture) else [split])]
        super().start(model, schedule, parts)

    def batches(self, model: nn.Module, split: Any, batch_size: int, *, shuffle: bool, epoch: int = 0,
                draw: int = 0) -> Iterator[Batch]:
        if not isinstance(split, TaskMixture):
            return super().batches(model, split, batch_size, shuffle=shuffle, epoch=epoch, draw=draw)

        def part_batches(part: EncodedSplit, pass_: int) -> Iterator[Batch]:
            return PrefixFeed.batches(self, model, part, batch_size, shuffle=shuffle, epoch=epoch, draw=pass_)

        return split.batches(batch_size, part_batches, seed=self.seed, epoch=epoch)


class MultiTaskTrainer(Trainer):
    """The Trainer with a MultiTask (a head per task) and TaskMixture splits."""

    task: MultiTask

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        feed = self.feed
        self.feed = MixtureFeed(feed.cache, device=feed.device, pad_id=feed.pad_id, batch_size=feed.build_batch_size,
                                precision=feed.precision, seed=feed.seed, dist=feed.dist)

    def evaluate(self, model: nn.Module, split: Any) -> EvalResult:
        """Each task's split scored with its own task, labels and loss (`of_heads`)."""
        if not isinstance(split, TaskMixture):
            return super().evaluate(model, split)
        heads = self.task.heads
        return of_heads({name: self.score(model, part, heads[name].task, heads[name].label_names,
                                          self.loss_fn[name])  # type: ignore[index]
                         for name, part in split.parts.items() if len(part)})


def of_heads(parts: dict[str, EvalResult]) -> MixtureResult:
    """One result for a multi-task split: each task's float metrics as `<name>/<metric>`, and each metric every
    task has as the unweighted mean over the tasks under its own name (`loss`, `macro_f1`, ...): what early
    stopping and the best epoch read, so every task counts alike whatever its size."""
    first = next(iter(parts.values())).metrics
    shared = [k for k, v in first.items() if isinstance(v, float)
              and all(isinstance(r.metrics.get(k), float) for r in parts.values())]
    means = {k: sum(r.metrics[k] for r in parts.values()) / len(parts) for k in shared}
    prefixed = {f"{name}/{k}": v for name, r in parts.items() for k, v in r.metrics.items() if isinstance(v, float)}
    return MixtureResult(loss=means.get("loss", float("nan")), metrics={**means, **prefixed},
                         predictions=Predictions(values=[], scores=None, raw=[]), parts=parts)
