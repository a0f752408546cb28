"""Metrics against values computed by hand on small arrays."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from tunelab.evaluation.metrics import (
    classification_metrics,
    multilabel_metrics,
    regression_metrics,
    scalar_metrics,
)


def test_classification_by_hand():
    # true: a a a b b c ; pred: a a b b c c ; class d never occurs
    y_true = np.array([0, 0, 0, 1, 1, 2])
    y_pred = np.array([0, 0, 1, 1, 2, 2])
    m = classification_metrics(y_true, y_pred, ["a", "b", "c", "d"])
    assert m["confusion_matrix"] == [[2, 1, 0, 0], [0, 1, 1, 0], [0, 0, 1, 0], [0, 0, 0, 0]]
    assert m["accuracy"] == pytest.approx(4 / 6)
    # per class: a P=1 R=2/3 F=0.8; b P=1/2 R=1/2 F=1/2; c P=1/2 R=1 F=2/3; d all 0
    assert m["per_class"]["a"] == pytest.approx({"precision": 1.0, "recall": 2 / 3, "f1": 0.8, "support": 3})
    assert m["per_class"]["c"] == pytest.approx({"precision": 0.5, "recall": 1.0, "f1": 2 / 3, "support": 1})
    assert m["per_class"]["d"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    assert m["macro_precision"] == pytest.approx((1 + 0.5 + 0.5 + 0) / 4)
    assert m["macro_recall"] == pytest.approx((2 / 3 + 0.5 + 1 + 0) / 4)
    assert m["macro_f1"] == pytest.approx((0.8 + 0.5 + 2 / 3 + 0) / 4)
    for key in ("micro_precision", "micro_recall", "micro_f1"):
        assert m[key] == pytest.approx(4 / 6)  # single-label: micro = accuracy
    assert m["weighted_f1"] == pytest.approx((0.8 * 3 + 0.5 * 2 + 2 / 3 * 1) / 6)
    json.dumps(m)  # plain Python types only
    assert all(type(v) is float for k, v in m.items() if k not in ("per_class", "confusion_matrix"))


def test_classification_rejects_bad_input():
    with pytest.raises(ValueError, match="outside"):
        classification_metrics(np.array([0, 3]), np.array([0, 1]), ["a", "b"])
    with pytest.raises(ValueError, match="same length"):
        classification_metrics(np.array([0, 1]), np.array([0]), ["a", "b"])


def test_multilabel_by_hand():
    y_true = np.array([[1, 0, 1], [0, 1, 0], [1, 1, 0]])
    y_pred = np.array([[1, 0, 0], [0, 1, 0], [1, 0, 1]])
    m = multilabel_metrics(y_true, y_pred, ["x", "y", "z"])
    # x: tp2 fp0 fn0 ; y: tp1 fp0 fn1 ; z: tp0 fp1 fn1
    assert m["subset_accuracy"] == pytest.approx(1 / 3)
    assert m["micro_precision"] == pytest.approx(3 / 4)
    assert m["micro_recall"] == pytest.approx(3 / 5)
    assert m["micro_f1"] == pytest.approx(2 * 3 / (2 * 3 + 1 + 2))
    assert m["macro_precision"] == pytest.approx((1 + 1 + 0) / 3)
    assert m["macro_recall"] == pytest.approx((1 + 0.5 + 0) / 3)
    assert m["macro_f1"] == pytest.approx((1 + 2 / 3 + 0) / 3)
    assert m["per_class"]["y"] == pytest.approx({"precision": 1.0, "recall": 0.5, "f1": 2 / 3, "support": 2})
    json.dumps(m)
    with pytest.raises(ValueError, match="only 0 and 1"):
        multilabel_metrics(y_true, y_pred * 0.7, ["x", "y", "z"])


def test_regression_by_hand():
    m = regression_metrics(np.array([1.0, 2.0, 3.0, 4.0]), np.array([1.0, 3.0, 2.0, 4.0]))
    # errors 0, 1, -1, 0: mse 0.5, mae 0.5; ss_tot = 5, ss_res = 2 -> r2 0.6
    assert m == pytest.approx({"mse": 0.5, "rmse": math.sqrt(0.5), "mae": 0.5, "r2": 0.6})
    assert regression_metrics(np.array([2.0, 2.0]), np.array([2.0, 2.0]))["r2"] == 1.0
    assert regression_metrics(np.array([2.0, 2.0]), np.array([1.0, 2.0]))["r2"] == 0.0


def test_scalar_metrics_keeps_top_level_numbers():
    m = classification_metrics(np.array([0, 1]), np.array([0, 0]), ["a", "b"])
    scalars = scalar_metrics(m)
    assert set(scalars) == {"accuracy", "macro_precision", "macro_recall", "macro_f1", "micro_precision",
                            "micro_recall", "micro_f1", "weighted_f1", "balanced_accuracy"}
    mixed = {"loss": np.float32(0.5), "n": 3, "flag": True, "x": [1]}
    assert scalar_metrics(mixed) == {"loss": 0.5, "n": 3.0}
