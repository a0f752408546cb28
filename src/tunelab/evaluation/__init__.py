"""Evaluation: metrics computed from predictions, as JSON-serialisable dicts."""

from tunelab.evaluation.metrics import (
    classification_metrics,
    multilabel_metrics,
    regression_metrics,
    scalar_metrics,
)

__all__ = ["classification_metrics", "multilabel_metrics", "regression_metrics", "scalar_metrics"]
