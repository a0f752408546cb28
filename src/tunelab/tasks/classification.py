"""Single-label classification: softmax over classes, cross-entropy with smoothing and class weights."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional

from tunelab.config.schema import LossConfig
from tunelab.data.records import Record
from tunelab.errors import ConfigError
from tunelab.tasks.base import Outputs, Predictions, SequenceTask

if TYPE_CHECKING:  # torch and numpy are imported by the methods that compute (tasks/base.py says why)
    import torch
    from torch import nn

    from tunelab.data.encoding import EncodedSplit

__all__ = ["ClassificationTask", "class_weight_tensor"]


class ClassificationTask(SequenceTask):
    name = "classification"
    metric_names = ("accuracy", "macro_f1", "micro_f1", "weighted_f1", "macro_precision", "macro_recall",
                    "balanced_accuracy", "macro_pr_auc")
    hf_problem_type = "single_label_classification"
    default_metric = "macro_f1"
    label_kind = "class"
    takes_label_smoothing = True
    takes_thresholds = True
    soft_targets = "softmax"

    def num_outputs(self, label_names: list[str]) -> int:
        return len(label_names)

    def targets(self, records: list[Record], label_names: list[str]) -> torch.Tensor:
        import torch

        index = {name: i for i, name in enumerate(label_names)}
        return torch.tensor([index[str(r.label)] for r in records], dtype=torch.long)

    def loss_fn(self, config: LossConfig, train: EncodedSplit, label_names: list[str]) -> nn.Module:
        from torch import nn

        from tunelab.tasks.losses import FocalLoss

        weight = class_weight_tensor(config.class_weights, train.targets, label_names)
        if config.name == "focal":
            return FocalLoss(config.focal_gamma, weight)
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
        return classification_metrics(targets.numpy(), np.asarray(predictions.raw), label_names,
                                      scores=predictions.scores)


    def tune_thresholds(self, predictions: Predictions, split: EncodedSplit, label_names: list[str]) -> dict[str, Any]:
        """The rarer class's threshold that maximises its F1 on `split` (validation); binary only."""
        import numpy as np

        from tunelab.evaluation.thresholds import best_f1_threshold, binary_positive

        if len(label_names) != 2:
            raise ConfigError(f"thresholds.tune: a threshold is tuned for two classes; this data has {len(label_names)} "
                              f"({', '.join(label_names[:6])}); remove thresholds.tune")
        targets = split.targets.numpy()
        positive = binary_positive(targets, label_names)
        threshold, _ = best_f1_threshold(targets == positive, np.asarray(predictions.scores)[:, positive])
        return {label_names[positive]: threshold}

    def with_thresholds(self, predictions: Predictions, thresholds: dict[str, float],
                        label_names: list[str]) -> Predictions:
        """The decisions again with the positive class taken at its threshold instead of the larger probability."""
        import numpy as np

        (name, threshold), = thresholds.items()
        positive = label_names.index(name)
        scores = np.asarray(predictions.scores)
        ids = np.where(scores[:, positive] >= threshold, positive, 1 - positive)
        return Predictions(values=[label_names[i] for i in ids], scores=scores, raw=ids)


def class_weight_tensor(setting: Any, targets: Optional[torch.Tensor], label_names: list[str]) -> Optional[torch.Tensor]:
    """`loss.class_weights` as one weight per class: None, inverse frequency in the training split (balanced),
    or the config's {label: weight} (unnamed labels 1); an unknown label is refused by name."""
    import torch

    if setting == "none":
        return None
    if isinstance(setting, dict):
        unknown = sorted(set(setting) - set(label_names))
        if unknown:
            raise ConfigError(f"loss.class_weights: {', '.join(map(repr, unknown))} is not a label of this data "
                              f"(labels: {', '.join(label_names)}); name labels as they appear in the label column")
        return torch.tensor([float(setting.get(name, 1.0)) for name in label_names])
    assert targets is not None
    counts = torch.bincount(targets, minlength=len(label_names)).float().clamp(min=1)
    return counts.sum() / (len(label_names) * counts)
