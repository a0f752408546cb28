"""The predictions table: one row per example, written by a run (`predictions.csv`, with the gold label) and
by `predict --output` (CSV or JSON Lines, without it). One writer, so both read the same way: the task shows
labels and predictions (`show`), and its score columns (one probability per class) follow."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

from tunelab.data.records import Record
from tunelab.tasks.base import Predictions, Task

__all__ = ["prediction_rows", "predictions_csv", "predictions_jsonl"]


def prediction_rows(records: list[Record], predictions: Predictions, label_names: list[str], task: Task, *,
                    with_labels: bool) -> list[dict[str, Any]]:
    """Rows of `where`, `text`, (`label`), `prediction` and, where the task scores classes, `probabilities`
    (rounded to 6 decimals: what a table shows)."""
    columns = task.score_columns(label_names) if predictions.scores is not None else []
    scores = predictions.scores if columns else [None] * len(records)
    rows = []
    for record, value, row_scores in zip(records, predictions.values, scores):
        row: dict[str, Any] = {"where": record.where, "text": record.text}
        if with_labels:
            row["label"] = record.label
        row["prediction"] = value
        if row_scores is not None:
            row["probabilities"] = {name: round(float(s), 6) for name, s in zip(label_names, row_scores)}
        rows.append(row)
    return rows


def predictions_csv(rows: list[dict[str, Any]], task: Task) -> str:
    """CSV with one probability column per class (6 decimals), values shown as the task shows them."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    classes = list(rows[0].get("probabilities", {})) if rows else []
    with_labels = bool(rows) and "label" in rows[0]
    writer.writerow(["where", "text", *(["label"] if with_labels else []), "prediction", *task.score_columns(classes)])
    for row in rows:
        gold = [task.show(row["label"])] if with_labels else []
        probs = [f"{row['probabilities'][c]:.6f}" for c in classes]
        writer.writerow([row["where"], row["text"], *gold, task.show(row["prediction"]), *probs])
    return buffer.getvalue()


def predictions_jsonl(rows: list[dict[str, Any]]) -> str:
    """One JSON object per line."""
    return "".join(json.dumps(row) + "\n" for row in rows)
