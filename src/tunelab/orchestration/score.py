"""Score a finished run directory on its prepared test split, after the fact: a search selects its trials
on validation only and tests the best one once, with the model as saved (what a user would load)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tunelab.artifacts.model_io import load_run
from tunelab.inference.generation import generate_test
from tunelab.inference.predict import predict_split
from tunelab.orchestration.outputs import write_report_html, write_test_outputs
from tunelab.orchestration.prepare import Prepared
from tunelab.tasks.base import Predictions

__all__ = ["score_test"]


def score_test(prepared: Prepared, run_dir: Path) -> dict[str, Any]:
    """`test_metrics.json`, `predictions.csv` and `report.html` (unless the run's config says `report: false`) for
    the run at `run_dir`, from the saved model; the metrics ({} for an empty test split)."""
    run = load_run(run_dir)
    metrics = _scored(prepared, run, run_dir) if len(prepared.encoded["test"]) else {}
    if run.config.report:  # with its test metrics; a search's trials are written without one
        write_report_html(run_dir, None)
    return metrics


def _scored(prepared: Prepared, run: Any, run_dir: Path) -> dict[str, Any]:
    """The test split's metrics from the saved model, with test_metrics.json and predictions.csv written."""
    test, task, config = prepared.encoded["test"], prepared.task, run.config
    model = run.model.to(prepared.device)
    if task.generative:
        texts, metrics = generate_test(task, model, test, run.tokenizer, config, prepared.device)
        predictions = Predictions(values=texts, scores=None, raw=texts)
    else:
        predictions, loss = predict_split(model, test, task, prepared.label_names,
                                          batch_size=config.train.evaluation_batch_size,
                                          pad_id=run.tokenizer.pad_token_id or 0, device=prepared.device,
                                          precision=config.train.precision)
        metrics = task.metrics(test, predictions, prepared.label_names)
    write_test_outputs(run_dir, prepared, metrics, predictions)
    return metrics
