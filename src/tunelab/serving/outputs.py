"""Predictions as the server's JSON outputs: one object per input, its fields set by the task.

Probabilities are rounded to 6 decimals, as `tunelab predict` writes them, so both give the same numbers.
"""

from __future__ import annotations

from typing import Any

from tunelab.data.records import Record
from tunelab.tasks.base import Predictions

__all__ = ["prediction_outputs", "generation_outputs"]


def prediction_outputs(task: str, predictions: Predictions, records: list[Record],
                       labels: list[str]) -> list[dict[str, Any]]:
    """classification: label + scores; multilabel: labels + scores; regression: value; token_classification:
    words + tags (one per word); instruction_tuning: text."""
    scores = predictions.scores
    outputs = []
    for i, (record, value) in enumerate(zip(records, predictions.values)):
        if task == "classification":
            out: dict[str, Any] = {"label": value, "scores": _scores(labels, scores[i])}
        elif task == "multilabel":
            out = {"labels": list(value), "scores": _scores(labels, scores[i])}
        elif task == "regression":
            out = {"value": float(value)}
        elif task == "token_classification":
            out = {"words": list(record.words or ()), "tags": list(value)}
        else:
            out = {"text": str(value)}
        outputs.append(out)
    return outputs


def generation_outputs(texts: list[str], stopped: list[bool]) -> list[dict[str, Any]]:
    """`stopped`: the reply ended on its own (an end-of-turn token), not at max_new_tokens."""
    return [{"text": text, "stopped": bool(done)} for text, done in zip(texts, stopped)]


def _scores(labels: list[str], row: Any) -> dict[str, float]:
    return {name: round(float(p), 6) for name, p in zip(labels, row)}
