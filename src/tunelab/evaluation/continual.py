"""Summaries of a task sequence's matrix R, R[i][j] = the test score on task i after training on task j
(i <= j; None above the diagonal), with T tasks:

* average accuracy (Lopez-Paz and Ranzato, 2017, GEM): ACC = 1/T sum_i R[i][T-1];
* backward transfer (GEM): BWT = 1/(T-1) sum_{i<T-1} (R[i][T-1] - R[i][i]), negative when learning later tasks
  cost earlier ones;
* average forgetting (Chaudhry et al., 2018): 1/(T-1) sum_{i<T-1} max_{i<=l<T-1} (R[i][l] - R[i][T-1]), the drop
  from the best a task ever scored to its last score (GEM itself defines no forgetting measure).
"""

from __future__ import annotations

from typing import Optional, Sequence

__all__ = ["average_accuracy", "backward_transfer", "average_forgetting", "sequence_summary"]

Matrix = Sequence[Sequence[Optional[float]]]


def _last(r: Matrix, i: int) -> float:
    value = r[i][len(r) - 1]
    if value is None:
        raise ValueError(f"R[{i}][{len(r) - 1}] is missing: every task is scored after the last one")
    return float(value)


def average_accuracy(r: Matrix) -> float:
    return sum(_last(r, i) for i in range(len(r))) / len(r)


def backward_transfer(r: Matrix) -> Optional[float]:
    t = len(r)
    if t < 2:
        return None
    return sum(_last(r, i) - float(r[i][i]) for i in range(t - 1)) / (t - 1)  # type: ignore[arg-type]


def average_forgetting(r: Matrix) -> Optional[float]:
    t = len(r)
    if t < 2:
        return None
    drops = [max(float(r[i][l]) for l in range(i, t - 1)) - _last(r, i) for i in range(t - 1)]  # type: ignore[arg-type]
    return sum(drops) / (t - 1)


def sequence_summary(r: Matrix) -> dict[str, Optional[float]]:
    """ACC, BWT, forgetting, and the last task's own score (how well the strategy still learns)."""
    return {"average_accuracy": average_accuracy(r), "backward_transfer": backward_transfer(r),
            "average_forgetting": average_forgetting(r), "last_task": _last(r, len(r) - 1)}
