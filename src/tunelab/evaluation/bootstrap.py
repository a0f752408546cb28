"""Paired bootstrap over test examples: is strategy A's score really above B's, or within the noise of
which examples happened to land in the test split?

Both strategies are scored on the same resamples of the test set (paired), so the shared difficulty of
examples cancels and only the difference between the models varies (Koehn 2004; Berg-Kirkpatrick et al.
2012). Resamples are multinomial weights over the examples, so one matrix product scores every round:
accuracy, macro-F1 and the regression errors are sums over examples.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

__all__ = ["BOOTSTRAP_METRICS", "paired_bootstrap"]

BOOTSTRAP_METRICS = ("accuracy", "macro_f1", "mse", "mae")  # what resampled sums can score
LOWER = {"mse", "mae"}


def paired_bootstrap(metric: str, truth: np.ndarray, a: Sequence[np.ndarray], b: Sequence[np.ndarray], *,
                     rounds: int = 2000, seed: int = 0) -> float:
    """The share of resamples in which B scores at least as well as A (a one-sided p-value for "A is
    better"). `a` and `b` hold one prediction array per seed (class indices, or numbers for mse/mae); a
    resample's score is the mean over seeds, so several seeds narrow the test as they should."""
    if metric not in BOOTSTRAP_METRICS:
        raise ValueError(f"paired bootstrap scores {', '.join(BOOTSTRAP_METRICS)}, not {metric!r}")
    rng = np.random.default_rng(seed)
    n = len(truth)
    weights = rng.multinomial(n, np.full(n, 1.0 / n), size=rounds).astype(np.float64)  # (R, n)
    score_a = np.mean([_scores(metric, truth, pred, weights) for pred in a], axis=0)
    score_b = np.mean([_scores(metric, truth, pred, weights) for pred in b], axis=0)
    better_b = score_b <= score_a if metric in LOWER else score_b >= score_a
    return float(np.mean(better_b))


def _scores(metric: str, truth: np.ndarray, pred: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """The metric on every resample at once: `(R,)`."""
    n = len(truth)
    if metric == "accuracy":
        return weights @ (truth == pred).astype(np.float64) / n
    if metric in ("mse", "mae"):
        err = np.asarray(pred, dtype=np.float64) - np.asarray(truth, dtype=np.float64)
        return weights @ (err ** 2 if metric == "mse" else np.abs(err)) / n
    classes = np.union1d(truth, pred)
    gold = (truth[:, None] == classes[None, :]).astype(np.float64)  # (n, C)
    said = (pred[:, None] == classes[None, :]).astype(np.float64)
    tp, fp, fn = weights @ (gold * said), weights @ ((1 - gold) * said), weights @ (gold * (1 - said))
    denominator = 2 * tp + fp + fn
    f1 = np.divide(2 * tp, denominator, out=np.zeros_like(tp), where=denominator > 0)
    present = (weights @ gold) > 0  # a class absent from a resample (and never predicted) does not count
    counted = present | (weights @ said > 0)
    return (f1 * counted).sum(1) / np.maximum(counted.sum(1), 1)
