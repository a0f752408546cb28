"""Regression: one output, MSE or Huber loss."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tunelab.config.schema import LossConfig
from tunelab.data.records import Record
from tunelab.tasks.base import Outputs, Predictions, SequenceTask

if TYPE_CHECKING:  # torch is imported by the methods that compute (tasks/base.py says why)
    import torch
    from torch import nn

    from tunelab.data.encoding import EncodedSplit

__all__ = ["RegressionTask"]


class RegressionTask(SequenceTask):
    name = "regression"
    metric_names = ("mse", "rmse", "mae", "r2")
    hf_problem_type = "regression"
    default_metric = "mse"
    label_kind = "number"
    takes_class_weights = False

    def num_outputs(self, label_names: list[str]) -> int:
        return 1

    def targets(self, records: list[Record], label_names: list[str]) -> torch.Tensor:
        import torch

        return torch.tensor([float(r.label) for r in records], dtype=torch.float32)

    def loss_fn(self, config: LossConfig, train: EncodedSplit, label_names: list[str]) -> nn.Module:
        from torch import nn

        from tunelab.tasks.losses import SqueezedLoss

        return SqueezedLoss(nn.HuberLoss() if config.regression == "huber" else nn.MSELoss())

    def predict(self, logits: Outputs, label_names: list[str], split: EncodedSplit) -> Predictions:
        import torch

        assert isinstance(logits, torch.Tensor)  # (N, C): one output row per example
        values = logits.float().squeeze(-1).numpy()
        return Predictions(values=[float(v) for v in values], scores=values[:, None], raw=values)

    def score_columns(self, label_names: list[str]) -> list[str]:
        return []  # the scores are the predicted values themselves

    def metrics(self, split: EncodedSplit, predictions: Predictions, label_names: list[str]) -> dict[str, Any]:
        from tunelab.evaluation.metrics import regression_metrics

        targets = split.targets
        assert targets is not None
        return regression_metrics(targets.numpy(), predictions.raw)
