"""Prediction and evaluation with a finished run: the same code path for the CLI and the server.

Everything here goes through `tunelab.inference`, as training's own evaluation does, so a loaded run
predicts, scores and generates exactly as its test split did (same batch size, precision and table).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import torch

from tunelab.artifacts.model_io import LoadedRun, load_run
from tunelab.atomic import atomic_write_text
from tunelab.data.labels import check_known_labels, missing_label
from tunelab.data.records import Record
from tunelab.errors import DataError
from tunelab.inference.generation import generate_split
from tunelab.inference.predict import encode_split, predict_split
from tunelab.inference.tables import prediction_rows, predictions_csv, predictions_jsonl
from tunelab.tasks.base import Predictions, Task
from tunelab.tasks.registry import get_task

__all__ = ["predict_records", "predict_rows", "evaluate_file", "write_predictions", "generate_replies"]

_DEVICE = torch.device("cpu")


def generate_replies(run: LoadedRun, records: list[Record], *,
                     max_new_tokens: Optional[int] = None) -> tuple[list[str], list[bool]]:
    """Greedy replies of a generative run (instruction tuning) to the records' prompts."""
    task = get_task(run.config.task)
    split = encode_split(records, run.tokenizer, run.config.data.max_length, task, run.label_names, with_targets=False)
    return generate_split(task, run.model, split, run.tokenizer, run.config, _DEVICE, max_new_tokens)


def predict_records(run: LoadedRun, records: list[Record]) -> Predictions:
    task = get_task(run.config.task)
    if task.generative:
        texts, _ = generate_replies(run, records)
        return Predictions(values=texts, scores=None, raw=texts)
    split = encode_split(records, run.tokenizer, run.config.data.max_length, task, run.label_names, with_targets=False)
    predictions, _ = predict_split(run.model, split, task, run.label_names, device=_DEVICE,
                                   batch_size=run.config.train.evaluation_batch_size, pad_id=_pad_id(run))
    return predictions


def predict_rows(run_dir: Path | LoadedRun, *, input_path: Optional[Path] = None,
                 texts: list[str] | None = None) -> list[dict[str, Any]]:
    run = run_dir if isinstance(run_dir, LoadedRun) else load_run(run_dir)
    task = get_task(run.config.task)
    if input_path is not None:
        records = task.read(input_path, run.config.data, require_labels=False)
    else:
        records = []
        for i, text in enumerate(texts or [], start=1):
            if not text.strip():
                raise DataError(f"--text #{i}: the text is empty; give the text to classify")
            records.append(Record(text=text, label=missing_label(task.label_kind), where=f"--text #{i}",
                                  words=tuple(text.split()), messages=(("user", text),)))
    return prediction_rows(records, predict_records(run, records), run.label_names, task, with_labels=False)


def evaluate_file(run_dir: Path, data_path: Path) -> dict[str, Any]:
    run = load_run(run_dir)
    task = get_task(run.config.task)
    records = task.read(data_path, run.config.data)
    check_known_labels(records, run.label_names, task.label_kind, str(data_path))
    split = task.encode(records, run.tokenizer, run.config.data.max_length, run.label_names)
    predictions, _ = predict_split(run.model, split, task, run.label_names, device=_DEVICE,
                                   batch_size=run.config.train.evaluation_batch_size, pad_id=_pad_id(run))
    metrics = task.metrics(split, predictions, run.label_names)
    if task.generative:  # teacher-forced perplexity, plus the replies it really writes
        texts, stopped = generate_split(task, run.model, split, run.tokenizer, run.config, _DEVICE)
        metrics.update(task.generation_metrics(records, texts, stopped))
    return metrics


def write_predictions(rows: list[dict[str, Any]], path: Path, task: Task) -> None:
    """`.jsonl`: one object per line; anything else: CSV with one probability column per class, the prediction
    shown as the task shows it in the run's own predictions.csv."""
    if path.suffix.lower() in (".jsonl", ".json"):
        atomic_write_text(path, predictions_jsonl(rows))
    else:
        atomic_write_text(path, predictions_csv(rows, task))


def _pad_id(run: LoadedRun) -> int:
    return run.tokenizer.pad_token_id or 0
