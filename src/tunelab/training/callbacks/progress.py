"""A progress bar with loss, learning rate, examples/s and ETA, and one log line per evaluation.

Both fit the terminal: the bar takes the width the text leaves (on a narrow terminal the text drops the
learning rate, so rich never has to elide the elapsed time or the ETA), and a status line that does not fit
breaks between its phrases, never inside one ("device\ncpu")."""

from __future__ import annotations

from typing import Optional, Sequence

from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn, TimeElapsedColumn,
                           TimeRemainingColumn)
from rich.text import Text

from tunelab.training.callbacks.base import Callback, Control, TrainState

__all__ = ["ProgressCallback", "print_phrases", "fit_phrases"]

WIDE = 100  # columns from which the bar also shows the learning rate


def fit_phrases(phrases: Sequence[str], width: int, sep: str = "; ", indent: str = "  ") -> list[str]:
    """The phrases joined by `sep` into lines of at most `width` cells (markup not counted), each line after
    the first indented: a line breaks between phrases, so none is cut in the middle ("device\ncpu")."""
    lines: list[str] = []
    for phrase in phrases:
        joined = f"{lines[-1]}{sep}{phrase}" if lines else phrase
        if lines and Text.from_markup(joined).cell_len <= width:
            lines[-1] = joined
        else:
            if lines:
                lines[-1] += sep.rstrip()
            lines.append(f"{indent}{phrase}" if lines else phrase)
    return lines


def print_phrases(console: Console, phrases: Sequence[str], sep: str = "; ") -> None:
    """Print one status line, broken between its phrases where it does not fit the console. A phrase wider
    than the console on its own (a long path) is left to the terminal to wrap, so it copies back whole."""
    for line in fit_phrases(phrases, console.width, sep):
        console.print(line, soft_wrap=Text.from_markup(line).cell_len > console.width)


def _columns(width: int) -> list[ProgressColumn]:
    """The bar's columns for a terminal `width` wide: the text needs 67 columns at most (10 epochs, 10,000s of
    steps and of ex/s), the bar takes what is left; the learning rate is shown where there is room for it."""
    stats = ("loss {task.fields[loss]:.4f}  lr {task.fields[lr]:.2e}  {task.fields[speed]} ex/s" if width >= WIDE
             else "loss {task.fields[loss]:.4f} {task.fields[speed]} ex/s")
    return [TextColumn("[bold]epoch {task.fields[epoch]}"), BarColumn(bar_width=None), MofNCompleteColumn(),
            TextColumn(stats),
            TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn()]


def _speed(examples_per_second: float) -> str:
    """Examples/s with one decimal while that matters (a CPU run does 8.4), none from 1,000 up (width)."""
    return f"{examples_per_second:.1f}" if examples_per_second < 1000 else f"{examples_per_second:.0f}"


class ProgressCallback(Callback):
    order = 100

    def __init__(self, console: Optional[Console] = None, metric: str = "accuracy") -> None:
        self.console = console or Console(stderr=True)
        self.metric = metric
        self.progress: Optional[Progress] = None
        self.task_id = None

    def on_fit_start(self, state: TrainState, control: Control) -> None:
        self.progress = Progress(*_columns(self.console.width), console=self.console, transient=False, expand=True)
        self.progress.start()
        self.task_id = self.progress.add_task("train", total=state.total_steps, epoch=f"1/{state.epochs}",
                                              loss=0.0, lr=state.lr, speed=_speed(0.0))

    def on_epoch_start(self, state: TrainState, control: Control) -> None:
        for event in state.events:
            self.progress.console.print(f"epoch {state.epoch + 1}: {event}")

    def on_step_end(self, state: TrainState, control: Control) -> None:
        speed = state.examples_seen / state.elapsed if state.elapsed > 0 else 0.0
        self.progress.update(self.task_id, completed=state.step, epoch=f"{state.epoch + 1}/{state.epochs}",
                             loss=state.loss, lr=state.lr, speed=_speed(speed))

    def on_evaluate(self, state: TrainState, control: Control) -> None:
        shown = {k: v for k, v in state.metrics.items() if isinstance(v, float)}
        head = f"epoch {state.epoch + 1}: validation"
        phrases = [f"{k} {v:.4f}" for k, v in list(shown.items())[:5]]
        print_phrases(self.progress.console, [f"{head} {phrases[0]}", *phrases[1:]] if phrases else [head], sep="  ")

    def on_fit_end(self, state: TrainState, control: Control) -> None:
        if self.progress is not None:
            self.progress.stop()
