"""Evaluation metrics as plain, JSON-serialisable dicts.

Pure numpy, so evaluation does not import scikit-learn (slow to import) and the numbers are easy to
check by hand; the definitions follow scikit-learn's with ``zero_division=0``: a ratio whose
denominator is 0 (a class never predicted, or never present) counts as 0. Every value is a Python
``float`` or ``int`` (never a numpy scalar) so the dicts go straight into ``metrics.jsonl``.
"""

from __future__ import annotations

import math
from typing import Any, Optional

import numpy as np

__all__ = ["classification_metrics", "multilabel_metrics", "regression_metrics", "scalar_metrics", "average_precision"]


def _ratio(numerator: np.ndarray | float, denominator: np.ndarray | float) -> np.ndarray:
    """Elementwise numerator / denominator, 0 where the denominator is 0 (zero_division=0)."""
    num = np.asarray(numerator, dtype=np.float64)
    den = np.asarray(denominator, dtype=np.float64)
    return np.divide(num, den, out=np.zeros(np.broadcast(num, den).shape), where=den != 0)


def _prf(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Precision, recall and F1 from true-positive, false-positive and false-negative counts."""
    precision = _ratio(tp, tp + fp)
    recall = _ratio(tp, tp + fn)
    f1 = _ratio(2 * tp, 2 * tp + fp + fn)  # = 2PR/(P+R), and 0 when both are 0
    return precision, recall, f1


def _per_class(label_names: list[str], precision: np.ndarray, recall: np.ndarray, f1: np.ndarray,
               support: np.ndarray) -> dict[str, dict[str, float | int]]:
    return {
        name: {"precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i]),
               "support": int(support[i])}
        for i, name in enumerate(label_names)
    }


def _micro_macro(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> dict[str, float]:
    """Micro (pooled counts) and macro (unweighted mean over classes) precision, recall and F1."""
    precision, recall, f1 = _prf(tp, fp, fn)
    micro_p, micro_r, micro_f1 = _prf(tp.sum(), fp.sum(), fn.sum())
    return {
        "macro_precision": float(precision.mean()), "macro_recall": float(recall.mean()),
        "macro_f1": float(f1.mean()),
        "micro_precision": float(micro_p), "micro_recall": float(micro_r), "micro_f1": float(micro_f1),
    }


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray, label_names: list[str],
                           scores: Optional[np.ndarray] = None) -> dict[str, Any]:
    """Single-label classification metrics over classes ``0 .. len(label_names) - 1``.

    ``y_true`` and ``y_pred`` are int arrays of shape (N,) holding class indices. Classes absent from
    both still appear in ``per_class`` and ``confusion_matrix`` (rows = true class, columns =
    predicted) and count (as 0) in the macro averages, as in scikit-learn with ``labels=range(C)``.
    ``balanced_accuracy`` is the mean recall of the classes present in ``y_true`` (scikit-learn's); with
    ``scores`` (N, C probabilities) each class also gets its PR-AUC, one class against the rest.
    """
    true, pred = _class_indices(y_true, y_pred, len(label_names))
    num_classes = len(label_names)
    cm = np.bincount(true * num_classes + pred, minlength=num_classes**2).reshape(num_classes, num_classes)
    tp = np.diag(cm).astype(np.float64)
    support = cm.sum(axis=1)
    fp = cm.sum(axis=0) - tp
    fn = support - tp
    precision, recall, f1 = _prf(tp, fp, fn)
    present = support > 0
    out = {
        "accuracy": float(tp.sum() / len(true)),
        **_micro_macro(tp, fp, fn),
        "weighted_f1": float(_ratio((f1 * support).sum(), support.sum())),
        "balanced_accuracy": float(recall[present].mean()) if present.any() else 0.0,
        "per_class": _per_class(label_names, precision, recall, f1, support),
        "confusion_matrix": cm.tolist(),
    }
    if scores is not None and len(true):
        _add_pr_auc(out, np.eye(num_classes, dtype=int)[true], np.asarray(scores), label_names)
    return out


def _add_pr_auc(metrics: dict[str, Any], indicator: np.ndarray, scores: np.ndarray, label_names: list[str]) -> None:
    """Each class's area under its precision-recall curve (average precision, scikit-learn's step form) into
    `per_class`, and their mean over the classes with a positive example as `macro_pr_auc`: unlike accuracy,
    it shows how well a rare class is ranked, whatever the threshold."""
    values = []
    for j, name in enumerate(label_names):
        if indicator[:, j].any():
            value = average_precision(indicator[:, j], scores[:, j])
            metrics["per_class"][name]["pr_auc"] = value
            values.append(value)
    metrics["macro_pr_auc"] = float(np.mean(values)) if values else 0.0


def average_precision(y_true: np.ndarray, scores: np.ndarray) -> float:
    """Sum over the distinct scores, highest first, of (recall gained) x precision there: scikit-learn's
    average_precision_score for 0/1 `y_true` with at least one positive."""
    order = np.argsort(-scores, kind="mergesort")
    hits, ranked = y_true[order], scores[order]
    last = np.r_[np.nonzero(np.diff(ranked))[0], len(ranked) - 1]  # the last row of each distinct score
    tps = np.cumsum(hits)[last].astype(np.float64)
    precision = tps / (last + 1)
    recall = tps / tps[-1]
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def multilabel_metrics(y_true: np.ndarray, y_pred: np.ndarray, label_names: list[str],
                       scores: Optional[np.ndarray] = None) -> dict[str, Any]:
    """Multi-label metrics from 0/1 indicator matrices of shape (N, C).

    ``subset_accuracy`` counts a row as right only when all C decisions are; micro averages pool the
    counts of every class, macro averages are the unweighted mean of per-class scores.
    """
    true = _indicator(y_true, "y_true", len(label_names))
    pred = _indicator(y_pred, "y_pred", len(label_names))
    if true.shape != pred.shape:
        raise ValueError(f"y_true has shape {true.shape} but y_pred has shape {pred.shape}")
    tp = (true & pred).sum(axis=0).astype(np.float64)
    fp = (~true & pred).sum(axis=0).astype(np.float64)
    fn = (true & ~pred).sum(axis=0).astype(np.float64)
    precision, recall, f1 = _prf(tp, fp, fn)
    out = {
        "subset_accuracy": float((true == pred).all(axis=1).mean()),
        **_micro_macro(tp, fp, fn),
        "per_class": _per_class(label_names, precision, recall, f1, true.sum(axis=0)),
    }
    if scores is not None and len(true):
        _add_pr_auc(out, true.astype(int), np.asarray(scores), label_names)
    return out


def regression_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """Mean squared error, its root, mean absolute error and R² (in the targets' units).

    R² follows scikit-learn: 1 - SS_res / SS_tot; when the targets are constant (SS_tot = 0) it is 1.0
    for perfect predictions and 0.0 otherwise, instead of dividing by zero.
    """
    true = np.asarray(y_true, dtype=np.float64).reshape(-1)
    pred = np.asarray(y_pred, dtype=np.float64).reshape(-1)
    if true.shape != pred.shape or true.size == 0:
        raise ValueError(f"need two non-empty arrays of the same length, got {true.size} and {pred.size}")
    error = pred - true
    mse = float(np.mean(error**2))
    ss_res = float(np.sum(error**2))
    ss_tot = float(np.sum((true - true.mean()) ** 2))
    if ss_tot == 0:
        r2 = 1.0 if ss_res == 0 else 0.0
    else:
        r2 = 1.0 - ss_res / ss_tot
    return {"mse": mse, "rmse": math.sqrt(mse), "mae": float(np.mean(np.abs(error))), "r2": r2}


def scalar_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    """Only the top-level numbers of a metrics dict (no per_class, no confusion matrix), as floats.

    This is what logging and early stopping compare from one evaluation to the next.
    """
    return {
        key: float(value) for key, value in metrics.items()
        if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
    }


def _class_indices(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Both arrays as int64 vectors of equal, non-zero length with values in [0, num_classes)."""
    true = np.asarray(y_true).reshape(-1)
    pred = np.asarray(y_pred).reshape(-1)
    if true.shape != pred.shape or true.size == 0:
        raise ValueError(f"need two non-empty arrays of the same length, got {true.size} and {pred.size}")
    if num_classes == 0:
        raise ValueError("label_names is empty")
    for name, values in (("y_true", true), ("y_pred", pred)):
        if not np.issubdtype(values.dtype, np.integer):
            raise ValueError(f"{name} must hold integer class indices, got dtype {values.dtype}")
        if values.min() < 0 or values.max() >= num_classes:
            raise ValueError(f"{name} holds class indices outside [0, {num_classes}): "
                             f"min {values.min()}, max {values.max()}")
    return true.astype(np.int64), pred.astype(np.int64)


def _indicator(values: np.ndarray, name: str, num_classes: int) -> np.ndarray:
    """A boolean (N, C) matrix from a 0/1 array; refuses other values and a wrong class count."""
    array = np.asarray(values)
    if array.ndim != 2 or array.shape[1] != num_classes or array.shape[0] == 0:
        raise ValueError(f"{name} must have shape (N>0, {num_classes}), got {array.shape}")
    if not np.isin(array, (0, 1)).all():
        raise ValueError(f"{name} must hold only 0 and 1 (threshold the scores first)")
    return array.astype(bool)
