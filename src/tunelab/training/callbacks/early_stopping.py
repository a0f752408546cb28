"""Early stopping on a chosen validation metric, remembering the best weights for restore."""

from __future__ import annotations

from typing import Callable, Literal, Optional

from tunelab.training.callbacks.base import Callback, Control, TrainState

__all__ = ["EarlyStoppingCallback", "metric_mode"]

LOWER_IS_BETTER = {"loss", "mse", "rmse", "mae", "perplexity"}


def metric_mode(metric: str, mode: Literal["auto", "max", "min"]) -> Literal["max", "min"]:
    if mode != "auto":
        return mode
    return "min" if metric in LOWER_IS_BETTER else "max"


class EarlyStoppingCallback(Callback):
    """Tracks the best epoch; `on_best` is called so the trainer can snapshot weights. Stops after
    `patience` evaluations without improvement (never, when patience is None)."""

    order = 10

    def __init__(self, metric: str, mode: Literal["max", "min"], patience: Optional[int],
                 on_best: Callable[[int, float], None]) -> None:
        self.metric, self.mode, self.patience, self.on_best = metric, mode, patience, on_best
        self.best: Optional[float] = None
        self.best_epoch: Optional[int] = None
        self.bad_epochs = 0

    def _better(self, value: float) -> bool:
        if self.best is None:
            return True
        return value > self.best if self.mode == "max" else value < self.best

    def on_evaluate(self, state: TrainState, control: Control) -> None:
        value = float(state.metrics[self.metric])
        if self._better(value):
            self.best, self.best_epoch, self.bad_epochs = value, state.epoch, 0
            self.on_best(state.epoch, value)
            return
        self.bad_epochs += 1
        if self.patience is not None and self.bad_epochs >= self.patience:
            control.stop_training = True
            control.reason = (f"early stopping: {self.metric} has not improved for {self.bad_epochs} epoch(s); "
                              f"best {self.best:.4f} at epoch {self.best_epoch + 1}")
