"""What a task must provide: targets from records, a loss, predictions and metrics.

Tasks never touch the model's internals: they get logits `(B, num_outputs)` and return losses,
predictions and metric dicts, so every strategy works with every task.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

import numpy as np
import torch

from tunelab.config.schema import LossConfig
from tunelab.data.records import Record

__all__ = ["Task", "Predictions"]


@dataclass
class Predictions:
    """Model outputs turned into what a user reads: one prediction and its scores per example."""

    values: list[Any]                    # class name, tuple of class names, or float
    scores: np.ndarray                   # (N, C) probabilities, or (N, 1) regression values
    raw: np.ndarray = field(repr=False)  # integer ids / 0-1 matrix / floats, for metrics


class Task(Protocol):
    name: ClassVar[str]
    metric_names: ClassVar[tuple[str, ...]]
    hf_problem_type: ClassVar[str]
    default_metric: ClassVar[str]

    def num_outputs(self, label_names: list[str]) -> int: ...

    def targets(self, records: list[Record], label_names: list[str]) -> torch.Tensor: ...

    def loss_fn(self, config: LossConfig, train_targets: torch.Tensor, label_names: list[str]) -> torch.nn.Module: ...

    def predict(self, logits: torch.Tensor, label_names: list[str]) -> Predictions: ...

    def metrics(self, targets: torch.Tensor, predictions: Predictions, label_names: list[str]) -> dict[str, Any]: ...
