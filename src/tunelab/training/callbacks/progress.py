"""A progress bar with loss, learning rate, examples/s and ETA, and one log line per evaluation."""

from __future__ import annotations

from typing import Optional

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from tunelab.training.callbacks.base import Callback, Control, TrainState

__all__ = ["ProgressCallback"]


class ProgressCallback(Callback):
    order = 100

    def __init__(self, console: Optional[Console] = None, metric: str = "accuracy") -> None:
        self.console = console or Console(stderr=True)
        self.metric = metric
        self.progress: Optional[Progress] = None
        self.task_id = None

    def on_fit_start(self, state: TrainState, control: Control) -> None:
        self.progress = Progress(
            TextColumn("[bold]epoch {task.fields[epoch]}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]:.4f}  lr {task.fields[lr]:.2e}  {task.fields[speed]:.1f} ex/s"),
            TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
            console=self.console, transient=False,
        )
        self.progress.start()
        self.task_id = self.progress.add_task("train", total=state.total_steps, epoch=f"1/{state.epochs}",
                                              loss=0.0, lr=state.lr, speed=0.0)

    def on_epoch_start(self, state: TrainState, control: Control) -> None:
        for event in state.events:
            self.progress.console.print(f"epoch {state.epoch + 1}: {event}")

    def on_step_end(self, state: TrainState, control: Control) -> None:
        speed = state.examples_seen / state.elapsed if state.elapsed > 0 else 0.0
        self.progress.update(self.task_id, completed=state.step, epoch=f"{state.epoch + 1}/{state.epochs}",
                             loss=state.loss, lr=state.lr, speed=speed)

    def on_evaluate(self, state: TrainState, control: Control) -> None:
        shown = {k: v for k, v in state.metrics.items() if isinstance(v, float)}
        text = "  ".join(f"{k} {v:.4f}" for k, v in list(shown.items())[:5])
        self.progress.console.print(f"epoch {state.epoch + 1}: validation {text}")

    def on_fit_end(self, state: TrainState, control: Control) -> None:
        if self.progress is not None:
            self.progress.stop()
