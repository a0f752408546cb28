"""Prediction and evaluation with a finished run or an export of one: the same code path for the CLI and the
server.

Everything here goes through a :class:`~tunelab.serving.predictor.Predictor` (and so through
`tunelab.inference`, as training's own evaluation does), so a loaded run or export predicts, scores and
generates exactly as its test split did (same batch size, precision and table).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Union

import torch

from tunelab.artifacts.model_io import LoadedRun
from tunelab.atomic import atomic_write_text
from tunelab.data.labels import check_known_labels, missing_label
from tunelab.data.records import Record
from tunelab.errors import DataError
from tunelab.inference.tables import prediction_rows, predictions_csv, predictions_jsonl
from tunelab.serving.predictor import Predictor, load_predictor, predictor_of
from tunelab.serving.reference_logprobs import run_reference
from tunelab.tasks.base import Predictions, Task
from tunelab.tasks.preference import reference_targets

__all__ = ["predict_records", "predict_rows", "read_inputs", "evaluate_file", "write_predictions", "generate_replies", "as_predictor"]

Source = Union[Path, str, LoadedRun, Predictor]
_CPU = torch.device("cpu")  # where a loaded run predicts (serving/predictor.py)


def as_predictor(source: Source, head: Optional[str] = None) -> Predictor:
    """A Predictor from a run or export directory (`head`: one head of a multi-task run), a loaded run, or a
    Predictor (returned as is)."""
    if isinstance(source, Predictor):
        return source
    if isinstance(source, LoadedRun):
        return predictor_of(source)
    return load_predictor(source, head=head)


def generate_replies(run: Source, records: list[Record], *,
                     max_new_tokens: Optional[int] = None) -> tuple[list[str], list[bool]]:
    """Greedy replies of a generative run (instruction tuning) to the records' prompts."""
    return as_predictor(run).generate(records, max_new_tokens)


def predict_records(run: Source, records: list[Record]) -> Predictions:
    return as_predictor(run).predict(records)


def predict_rows(run_dir: Source, *, input_path: Optional[Path] = None,
                 texts: list[str] | None = None) -> list[dict[str, Any]]:
    predictor = as_predictor(run_dir)
    records = read_inputs(predictor, input_path, texts)
    return prediction_rows(records, predictor.predict(records), predictor.label_names, predictor.task,
                           with_labels=False)


def read_inputs(predictor: Predictor, input_path: Optional[Path], texts: list[str] | None) -> list[Record]:
    """What `predict` was given: a file read with the run's own columns (labels not needed), or --text values."""
    task = predictor.task
    if input_path is not None:
        return task.read(input_path, predictor.config.data, require_labels=False)
    records = []
    for i, text in enumerate(texts or [], start=1):
        if not text.strip():
            raise DataError(f"--text #{i}: the text is empty; give the text to classify")
        records.append(Record(text=text, label=missing_label(task.label_kind), where=f"--text #{i}",
                              words=tuple(text.split()), messages=(("user", text),)))
    return records


def evaluate_file(run_dir: Source, data_path: Path, head: Optional[str] = None) -> dict[str, Any]:
    predictor = as_predictor(run_dir, head)
    task = predictor.task
    records = task.read(data_path, predictor.config.data)
    check_known_labels(records, predictor.label_names, task.label_kind, str(data_path))
    split = predictor.encode(records, with_targets=True)
    if task.needs_reference:  # preference: the base model's log-probs of the pairs, as the run's own test split had
        reference = run_reference(predictor.config, task, split, precision=predictor.precision, device=_CPU,
                                  pad_id=predictor.pad_id)
        split.targets = reference_targets(reference.logprobs, predictor.config.preference.beta)
    teacher_forced = not (task.generative and predictor.run is None)  # an exported decoder has next-token logits only
    metrics = task.metrics(split, predictor.predict_split(split), predictor.label_names) if teacher_forced else {}
    if task.generative:  # teacher-forced perplexity, plus the replies it really writes
        texts, stopped = predictor.generate(records)
        metrics.update(task.generation_metrics(records, texts, stopped))
    return metrics


def write_predictions(rows: list[dict[str, Any]], path: Path, task: Task) -> None:
    """`.jsonl`: one object per line; anything else: CSV with one probability column per class, the prediction
    shown as the task shows it in the run's own predictions.csv."""
    if path.suffix.lower() in (".jsonl", ".json"):
        atomic_write_text(path, predictions_jsonl(rows))
    else:
        atomic_write_text(path, predictions_csv(rows, task))
