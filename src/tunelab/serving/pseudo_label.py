"""Pseudo-labels: a trained classifier labels unlabelled text, and the rows it is sure of become training data.

Self-training for domain adaptation (Lee 2013; Xie et al. 2020 for the noisy-student form): a model trained on
the source domain predicts the target domain's unlabelled text, the predictions above a confidence become
labels, and a second run trains on source and pseudo-labelled target together. The file written has the run's
own text and label columns, so the run's config reads it as `data.train` (or beside the source data) as it is.
"""

from __future__ import annotations

import csv
import io
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tunelab.atomic import atomic_write_text
from tunelab.errors import ConfigError, DataError
from tunelab.inference.tables import predictions_jsonl
from tunelab.serving.predict import Source, as_predictor, read_inputs

__all__ = ["PseudoLabels", "pseudo_label"]


@dataclass
class PseudoLabels:
    kept: int
    read: int
    per_label: dict[str, int]
    path: Path


def pseudo_label(run: Source, input_path: Path, output: Path, min_confidence: float,
                 balance: bool = False) -> PseudoLabels:
    """Write the rows of `input_path` whose predicted class has probability >= `min_confidence` to `output`
    (.csv or .jsonl) with that class as their label and the probability beside it. `balance` keeps as many rows
    of each predicted class as of the rarest one (the most confident of each): a model is surest of its majority
    class, so the confident rows skew towards it. Nothing is written when no row is that sure (an earlier file
    at `output` stays as it was)."""
    if not 0.0 < min_confidence <= 1.0:
        raise ConfigError(f"--min-confidence {min_confidence}: give a probability in (0, 1], e.g. 0.9")
    predictor = as_predictor(run)
    task, data = predictor.task, predictor.config.data
    if task.name != "classification":
        raise ConfigError(f"pseudo-label: the run's task is {task.name}; pseudo-labels are made by single-label "
                          "classification runs (one class and its probability per row)")
    records = read_inputs(predictor, input_path, None)
    predictions = predictor.predict(records)
    confidence = np.asarray(predictions.scores).max(axis=1)
    keep = np.flatnonzero(confidence >= min_confidence)
    if balance and len(keep):
        keep = _balanced(keep, confidence, [str(v) for v in predictions.values])
    if not len(keep):
        raise DataError(f"{input_path}: no row of {len(records)} is predicted with probability >= {min_confidence} "
                        f"(the highest is {confidence.max():.3f}); lower --min-confidence")
    rows = [{data.text_column: records[i].text, data.label_column: predictions.values[i],
             "confidence": round(float(confidence[i]), 6), "source": records[i].where} for i in keep]
    atomic_write_text(output, predictions_jsonl(rows) if output.suffix.lower() in (".jsonl", ".json") else _csv(rows))
    return PseudoLabels(kept=len(rows), read=len(records), per_label=dict(Counter(str(r[data.label_column]) for r in rows)),
                        path=output)


def _balanced(keep: np.ndarray, confidence: np.ndarray, labels: list[str]) -> np.ndarray:
    """The most confident rows of each class among `keep`, as many of each as the rarest class has, in input order."""
    by_class: dict[str, list[int]] = {}
    for i in keep:
        by_class.setdefault(labels[i], []).append(int(i))
    fewest = min(len(rows) for rows in by_class.values())
    chosen = [i for rows in by_class.values() for i in sorted(rows, key=lambda i: -confidence[i])[:fewest]]
    return np.array(sorted(chosen), dtype=np.int64)


def _csv(rows: list[dict]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()
