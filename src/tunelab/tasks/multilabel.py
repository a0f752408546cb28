"""Multi-label classification: one sigmoid per class, BCE-with-logits, threshold 0.5."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tunelab.config.schema import LossConfig
from tunelab.data.records import Record
from tunelab.tasks.base import Outputs, Predictions, SequenceTask

if TYPE_CHECKING:  # torch is imported by the methods that compute (tasks/base.py says why)
    import torch
    from torch import nn

    from tunelab.data.encoding import EncodedSplit

__all__ = ["MultilabelTask"]


class MultilabelTask(SequenceTask):
    name = "multilabel"
    metric_names = ("subset_accuracy", "micro_f1", "macro_f1", "micro_precision", "micro_recall", "macro_pr_auc")
    hf_problem_type = "multi_label_classification"
    default_metric = "micro_f1"
    label_kind = "classes"
    soft_targets = "sigmoid"
    threshold = 0.5
    takes_thresholds = True

    def num_outputs(self, label_names: list[str]) -> int:
        return len(label_names)

    def targets(self, records: list[Record], label_names: list[str]) -> torch.Tensor:
        import torch

        index = {name: i for i, name in enumerate(label_names)}
        out = torch.zeros(len(records), len(label_names))
        for row, record in enumerate(records):
            for name in record.label:
                out[row, index[name]] = 1.0
        return out

    def loss_fn(self, config: LossConfig, train: EncodedSplit, label_names: list[str]) -> nn.Module:
        from torch import nn

        from tunelab.tasks.classification import class_weight_tensor
        from tunelab.tasks.losses import SigmoidFocalLoss

        train_targets = train.targets
        pos_weight = None
        if config.class_weights == "balanced":  # per class: its negatives over its positives
            positives = train_targets.sum(0).clamp(min=1)
            pos_weight = (len(train_targets) - positives).clamp(min=1) / positives
        elif isinstance(config.class_weights, dict):  # {label: weight of a positive}
            pos_weight = class_weight_tensor(config.class_weights, None, label_names)
        if config.name == "focal":
            return SigmoidFocalLoss(config.focal_gamma, config.focal_alpha, pos_weight)
        return nn.BCEWithLogitsLoss(pos_weight=pos_weight)

    def predict(self, logits: Outputs, label_names: list[str], split: EncodedSplit) -> Predictions:
        import torch

        assert isinstance(logits, torch.Tensor)  # (N, C): one output row per example
        probs = torch.sigmoid(logits.float()).numpy()
        chosen = (probs >= self.threshold).astype(int)
        values = [tuple(label_names[j] for j in row.nonzero()[0]) for row in chosen]
        return Predictions(values=values, scores=probs, raw=chosen)

    def tune_thresholds(self, predictions: Predictions, split: EncodedSplit, label_names: list[str]) -> dict[str, Any]:
        """Each class's threshold that maximises its F1 on `split` (validation)."""
        import numpy as np

        from tunelab.evaluation.thresholds import best_f1_threshold

        targets, scores = split.targets.numpy() > 0.5, np.asarray(predictions.scores)
        return {name: best_f1_threshold(targets[:, j], scores[:, j])[0] for j, name in enumerate(label_names)}

    def with_thresholds(self, predictions: Predictions, thresholds: dict[str, float],
                        label_names: list[str]) -> Predictions:
        import numpy as np

        scores = np.asarray(predictions.scores)
        chosen = (scores >= np.array([thresholds.get(n, self.threshold) for n in label_names])).astype(int)
        values = [tuple(label_names[j] for j in row.nonzero()[0]) for row in chosen]
        return Predictions(values=values, scores=scores, raw=chosen)

    def metrics(self, split: EncodedSplit, predictions: Predictions, label_names: list[str]) -> dict[str, Any]:
        from tunelab.evaluation.metrics import multilabel_metrics

        targets = split.targets
        assert targets is not None
        return multilabel_metrics(targets.numpy().astype(int), predictions.raw, label_names, scores=predictions.scores)
