"""`thresholds.tune` in a run: after the fit, the task's thresholds are chosen on the validation split
(evaluation/thresholds.py), written as `thresholds.json` beside `labels.json` and applied to the test split's
decisions, so the test figures are those `predict` and the server will give."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tunelab.atomic import atomic_write_json
from tunelab.config.schema import RunConfig
from tunelab.errors import ConfigError
from tunelab.evaluation.thresholds import THRESHOLDS_FILE
from tunelab.orchestration.prepare import Prepared
from tunelab.tasks.base import Predictions
from tunelab.training.trainer import Trainer

__all__ = ["check_thresholds", "tuned_predictions"]


def check_thresholds(prepared: Prepared, config: RunConfig) -> None:
    """Before any training: the data must have a validation split, and two classes for a single-label task."""
    if not config.thresholds.tune:
        return
    if not len(prepared.encoded["validation"]):
        raise ConfigError("thresholds.tune: thresholds are chosen on the validation split, and this run has none; "
                          "set data.validation_split above 0 or give data.validation")
    if prepared.task.label_kind == "class" and len(prepared.label_names) != 2:
        raise ConfigError(f"thresholds.tune: a threshold is tuned for two classes; this data has "
                          f"{len(prepared.label_names)}; remove thresholds.tune")


def tuned_predictions(trainer: Trainer, model: Any, prepared: Prepared, staging: Path,
                      test: Predictions) -> tuple[Predictions, dict[str, Any]]:
    """The test decisions at the thresholds that maximise F1 on validation, and what was chosen (with each
    class's validation F1 at the default decision and at its threshold)."""
    task, labels, validation = prepared.task, prepared.label_names, prepared.encoded["validation"]
    scored = trainer.evaluate(model, validation)
    thresholds = task.tune_thresholds(scored.predictions, validation, labels)
    tuned = task.metrics(validation, task.with_thresholds(scored.predictions, thresholds, labels), labels)
    chosen = {"thresholds": thresholds, "chosen_on": f"validation split ({len(validation)} examples), max F1",
              "validation_f1": {name: {"default": scored.metrics["per_class"][name]["f1"],
                                       "tuned": tuned["per_class"][name]["f1"]} for name in thresholds}}
    atomic_write_json(staging / THRESHOLDS_FILE, chosen)
    return task.with_thresholds(test, thresholds, labels), chosen
