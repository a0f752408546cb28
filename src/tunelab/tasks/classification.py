"""Single-label classification: softmax over classes, cross-entropy with smoothing and class weights."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tunelab.config.schema import LossConfig
from tunelab.data.records import Record
from tunelab.tasks.base import Outputs, Predictions, SequenceTask

if TYPE_CHECKING:  # torch and numpy are imported by the methods that compute (tasks/base.py says why)
    import torch
    from torch import nn

    from tunelab.data.encoding import EncodedSplit

__all__ = ["ClassificationTask"]


class ClassificationTask(SequenceTask):
    name = "classification"
    metric_names = ("accuracy", "macro_f1", "micro_f1", "weighted_f1", "macro_precision", "macro_recall")
    hf_problem_type = "single_label_classification"
    default_metric = "macro_f1"
    label_kind = "class"
    takes_label_smoothing = True

    def num_outputs(self, label_names: list[str]) -> int:
        return len(label_names)

    def targets(self, records: list[Record], label_names: list[str]) -> torch.Tensor:
        import torch

        index = {name: i for i, name in enumerate(label_names)}
        return torch.tensor([index[str(r.label)] for r in records], dtype=torch.long)

    def loss_fn(self, config: LossConfig, train: EncodedSplit, label_names: list[str]) -> nn.Module:
        import torch
        from torch import nn

        train_targets = train.targets
        weight = None
        if config.class_weights == "balanced":
            counts = torch.bincount(train_targets, minlength=len(label_names)).float().clamp(min=1)
            weight = counts.sum() / (len(label_names) * counts)
        return nn.CrossEntropyLoss(weight=weight, label_smoothing=config.label_smoothing)

    def predict(self, logits: Outputs, label_names: list[str], split: EncodedSplit) -> Predictions:
        import torch

        assert isinstance(logits, torch.Tensor)  # (N, C): one output row per example
        probs = torch.softmax(logits.float(), dim=-1).numpy()
        ids = probs.argmax(axis=-1)
        return Predictions(values=[label_names[i] for i in ids], scores=probs, raw=ids)

    def metrics(self, split: EncodedSplit, predictions: Predictions, label_names: list[str]) -> dict[str, Any]:
        import numpy as np

        from tunelab.evaluation.metrics import classification_metrics

        targets = split.targets
        assert targets is not None
        return classification_metrics(targets.numpy(), np.asarray(predictions.raw), label_names)
