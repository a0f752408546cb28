"""Prediction and evaluation with a finished run: the same code path for the CLI and (later) the server."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any, Optional

import torch

from tunelab.atomic import atomic_write_text
from tunelab.artifacts.model_io import LoadedRun, load_run
from tunelab.data.encoding import iterate_batches
from tunelab.data.labels import check_known_labels, missing_label
from tunelab.data.records import Record
from tunelab.errors import DataError
from tunelab.tasks.base import Predictions, Task
from tunelab.tasks.registry import get_task
from tunelab.training.run import encode_split, generate_split
from tunelab.training.step import predict_logits

__all__ = ["predict_records", "predict_rows", "evaluate_file", "write_predictions", "generate_replies"]


def generate_replies(run: LoadedRun, records: list[Record], *,
                     max_new_tokens: Optional[int] = None) -> tuple[list[str], list[bool]]:
    """Greedy replies of a generative run (instruction tuning) to the records' prompts."""
    task = get_task(run.config.task)
    split = encode_split(records, run.tokenizer, run.config.data.max_length, task, run.label_names, with_targets=False)
    return generate_split(task, run.model, split, run.tokenizer, run.config, torch.device("cpu"), max_new_tokens)


def predict_records(run: LoadedRun, records: list[Record]) -> Predictions:
    task = get_task(run.config.task)
    if getattr(task, "generative", False):
        texts, _ = generate_replies(run, records)
        return Predictions(values=texts, scores=None, raw=texts)
    split = encode_split(records, run.tokenizer, run.config.data.max_length, task, run.label_names, with_targets=False)
    batches = iterate_batches(split, run.config.train.eval_batch_size or 64, pad_id=run.tokenizer.pad_token_id or 0, shuffle=False)
    outputs, _ = predict_logits(run.model, batches, len(split), torch.device("cpu"))
    return task.predict(outputs, run.label_names, split)


def predict_rows(run_dir: Path | LoadedRun, *, input_path: Optional[Path] = None, texts: list[str] | None = None) -> list[dict[str, Any]]:
    run = run_dir if isinstance(run_dir, LoadedRun) else load_run(run_dir)
    if input_path is not None:
        records = get_task(run.config.task).read(input_path, run.config.data, require_labels=False)
    else:
        records = []
        for i, text in enumerate(texts or [], start=1):
            if not text.strip():
                raise DataError(f"--text #{i}: the text is empty; give the text to classify")
            records.append(Record(text=text, label=missing_label(run.config.task), where=f"--text #{i}",
                                  words=tuple(text.split()), messages=(("user", text),)))
    predictions = predict_records(run, records)
    rows = []
    all_scores = predictions.scores if predictions.scores is not None else [None] * len(records)
    for record, value, scores in zip(records, predictions.values, all_scores):
        row: dict[str, Any] = {"where": record.where, "text": record.text, "prediction": value}
        if scores is not None and run.config.task != "regression":
            row["probabilities"] = {name: round(float(s), 6) for name, s in zip(run.label_names, scores)}
        rows.append(row)
    return rows


def evaluate_file(run_dir: Path, data_path: Path) -> dict[str, Any]:
    run = load_run(run_dir)
    task = get_task(run.config.task)
    records = task.read(data_path, run.config.data)
    check_known_labels(records, run.label_names, run.config.task, str(data_path))
    split = task.encode(records, run.tokenizer, run.config.data.max_length, run.label_names)
    outputs, _ = predict_logits(run.model, iterate_batches(split, run.config.train.eval_batch_size or 64,
                                                           pad_id=run.tokenizer.pad_token_id or 0, shuffle=False),
                                len(split), torch.device("cpu"), reduce=getattr(task, "reduce_outputs", None))
    metrics = task.metrics(split, task.predict(outputs, run.label_names, split), run.label_names)
    if getattr(task, "generative", False):  # teacher-forced perplexity, plus the replies it really writes
        texts, stopped = generate_split(task, run.model, split, run.tokenizer, run.config, torch.device("cpu"))
        metrics.update(task.generation_metrics(records, texts, stopped))  # type: ignore[attr-defined]
    return metrics


def write_predictions(rows: list[dict[str, Any]], path: Path, task: Task) -> None:
    """`.jsonl`: one object per line; anything else: CSV with one probability column per class, the prediction
    shown as the task shows it in the run's own predictions.csv."""
    if path.suffix.lower() in (".jsonl", ".json"):
        atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in rows))
        return
    buffer = io.StringIO()
    classes = list(rows[0].get("probabilities", {})) if rows else []
    writer = csv.writer(buffer)
    writer.writerow(["where", "text", "prediction", *[f"prob_{c}" for c in classes]])
    for row in rows:
        writer.writerow([row["where"], row["text"], task.show(row["prediction"]), *[row["probabilities"][c] for c in classes]])
    atomic_write_text(path, buffer.getvalue())
