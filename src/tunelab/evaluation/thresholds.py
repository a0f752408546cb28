"""Decision thresholds tuned on validation (`thresholds.tune`): a binary or multi-label classifier trained on
imbalanced data ranks its rare class well (its PR-AUC) but puts the rare class's probabilities below 0.5, so
at the default threshold its recall stays low. The threshold that maximises a class's F1 on the validation
split is chosen after training, saved with the run (`thresholds.json`) and used wherever the run predicts.
Pure numpy, checked by hand in tests/unit/tasks/test_imbalance.py."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import numpy as np

__all__ = ["best_f1_threshold", "THRESHOLDS_FILE", "read_thresholds", "binary_positive"]

THRESHOLDS_FILE = "thresholds.json"


def best_f1_threshold(y_true: np.ndarray, scores: np.ndarray) -> tuple[float, float]:
    """(threshold, F1) maximising F1 of `score >= threshold` against 0/1 `y_true`; the threshold lies halfway
    between the last score taken and the next one down, so it generalises beyond the validation scores. A
    split without a positive keeps 0.5."""
    if not y_true.any():
        return 0.5, 0.0
    order = np.argsort(-scores, kind="mergesort")
    hits, ranked = y_true[order].astype(np.float64), scores[order]
    last = np.r_[np.nonzero(np.diff(ranked))[0], len(ranked) - 1]  # the last row of each distinct score
    tps = np.cumsum(hits)[last]
    f1 = 2 * tps / ((last + 1) + hits.sum())
    best = int(np.argmax(f1))
    below = ranked[last[best] + 1] if last[best] + 1 < len(ranked) else ranked[last[best]] - 1e-6
    return float((ranked[last[best]] + below) / 2), float(f1[best])


def binary_positive(targets: np.ndarray, label_names: list[str]) -> int:
    """The class a binary threshold is set on: the rarer one in training (the second on a tie)."""
    counts = np.bincount(targets, minlength=2)
    return 0 if counts[0] < counts[1] else 1


def read_thresholds(folder: Path) -> Optional[dict[str, float]]:
    """`{label: threshold}` of a run or export directory, None when it has none."""
    path = Path(folder) / THRESHOLDS_FILE
    if not path.is_file():
        return None
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return {str(k): float(v) for k, v in data["thresholds"].items()}
