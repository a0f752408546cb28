"""Ensembles: several runs of one label set predict together, by the mean of their class probabilities.

Why the mean of probabilities (soft voting) rather than of votes: it keeps each member's confidence, ties do
not need breaking, and it is what a run's own probabilities mean. Each member predicts through its own
Predictor (its tokenizer, precision and batch size), so runs of different backbones or strategies ensemble as
long as their classes are the same names in the same order. A member's tuned thresholds (thresholds.json) are
its own decision rule and do not apply to the mean: the ensemble takes the most probable class.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import numpy as np

from tunelab.data.records import Record
from tunelab.errors import ConfigError
from tunelab.inference.tables import prediction_rows
from tunelab.serving.predict import read_inputs
from tunelab.serving.predictor import Predictor, load_predictor
from tunelab.tasks.base import Predictions

__all__ = ["load_members", "ensemble_predict", "ensemble_rows"]


def load_members(run_dirs: list[Path]) -> list[Predictor]:
    """The members, refused unless they are two or more classification runs of one label set."""
    if len(run_dirs) < 2:
        raise ConfigError("predict --ensemble: give two or more RUN_DIRs to average")
    members = [load_predictor(run) for run in run_dirs]
    first = members[0]
    for run, member in zip(run_dirs, members):
        if member.task.name != "classification":
            raise ConfigError(f"predict --ensemble: {run} is a {member.task.name} run; ensembles average the class "
                              "probabilities of single-label classification runs")
        if list(member.label_names) != list(first.label_names):
            raise ConfigError(f"predict --ensemble: {run} has classes {list(member.label_names)}, {run_dirs[0]} has "
                              f"{list(first.label_names)}: the members must share one label set, in one order")
    return members


def ensemble_predict(members: list[Predictor], records: list[Record]) -> Predictions:
    """The mean of the members' probabilities per record, and its most probable class."""
    scores = np.mean([np.asarray(member.predict(records).scores, dtype=np.float64) for member in members], axis=0)
    ids = scores.argmax(axis=1)
    names = members[0].label_names
    return Predictions(values=[names[i] for i in ids], scores=scores, raw=ids)


def ensemble_rows(members: list[Predictor], *, input_path: Optional[Path] = None,
                  texts: Optional[list[str]] = None) -> list[dict[str, Any]]:
    """`predict`'s rows for the ensemble: the inputs read with the first member's columns, one row each."""
    first = members[0]
    records = read_inputs(first, input_path, texts)
    return prediction_rows(records, ensemble_predict(members, records), first.label_names, first.task,
                           with_labels=False)
