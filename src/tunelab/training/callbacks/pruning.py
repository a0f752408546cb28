"""Report the validation metric to a search's trial at every epoch end and stop a trial its pruner gives
up on. The trial is duck-typed (`report(value, step)`, `should_prune()`: Optuna's), so training never
imports the search library."""

from __future__ import annotations

import math
from typing import Any

from tunelab.training.callbacks.base import Callback, Control, TrainState

__all__ = ["PruningCallback"]


class PruningCallback(Callback):
    order = 60  # after the metrics log, so a pruned epoch is still written

    def __init__(self, trial: Any, metric: str) -> None:
        self.trial, self.metric = trial, metric
        self.pruned_at: int | None = None   # the epoch (1-based) the trial was pruned at

    def on_evaluate(self, state: TrainState, control: Control) -> None:
        value = state.metrics.get(self.metric)
        if not isinstance(value, (int, float)) or math.isnan(value):
            return
        self.trial.report(float(value), step=state.epoch)
        if self.trial.should_prune():
            self.pruned_at = state.epoch + 1
            control.stop_training = True
            control.reason = f"pruned at epoch {self.pruned_at}: {self.metric} {value:.4f} is behind the other trials"
