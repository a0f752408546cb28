"""The progress bar and the status lines fit an 80-column terminal: no line is wider, the elapsed time and
the ETA are never elided ("0:00:… ETA"), and a long line breaks between phrases (issue 13)."""

from __future__ import annotations

import re
from io import StringIO

from rich.console import Console
from rich.text import Text

from tunelab.training.callbacks.base import Control, TrainState
from tunelab.training.callbacks.progress import ProgressCallback, fit_phrases

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def _rendered(width: int) -> list[str]:
    out = StringIO()
    console = Console(width=width, file=out, force_terminal=True, color_system=None)
    callback, control = ProgressCallback(console), Control()
    # the widest figures a long run shows: 5-digit steps, 2-digit epochs, 5-digit examples/s
    state = TrainState(epoch=9, epochs=10, step=12_000, total_steps=12_000, examples_seen=12_345_600, loss=0.6821,
                       lr=3.0e-5, elapsed=1000.0)
    callback.on_fit_start(state, control)
    callback.on_step_end(state, control)
    callback.on_evaluate(TrainState(**{**state.__dict__, "metrics": {
        "loss": 0.5, "accuracy": 0.9, "macro_precision": 0.9, "macro_recall": 0.9, "macro_f1": 0.9}}), control)
    callback.on_fit_end(state, control)
    text = ANSI.sub("", out.getvalue()).replace("\r", "\n")
    return [line for line in text.split("\n") if line.strip()]


def test_progress_line_fits_80_columns_with_time_and_eta_whole() -> None:
    lines = _rendered(80)
    assert all(Text(line).cell_len <= 80 for line in lines), lines
    bar = [line for line in lines if "12000/12000" in line][-1]
    assert "…" not in bar and re.search(r"\d+:\d\d:\d\d ETA \d+:\d\d:\d\d", bar), bar
    assert "12346 ex/s" in bar and "loss 0.6821" in bar


def test_wide_terminal_also_shows_the_learning_rate() -> None:
    bar = [line for line in _rendered(120) if "12000/12000" in line][-1]
    assert "lr 3.00e-05" in bar and len(bar) <= 120


def test_validation_line_breaks_between_metrics() -> None:
    lines = [line for line in _rendered(80) if "macro" in line or "validation" in line]
    assert [line.rstrip() for line in lines] == [
        "epoch 10: validation loss 0.5000  accuracy 0.9000  macro_precision 0.9000",
        "  macro_recall 0.9000  macro_f1 0.9000"], lines


def test_fit_phrases_breaks_between_phrases_only() -> None:
    phrases = ["[bold]gradual[/]: 1,122 of 21,186 parameters trainable (5.30%)", "18,210 once all blocks unfreeze",
               "2 blocks", "device cpu"]
    assert fit_phrases(phrases, 80) == ["[bold]gradual[/]: 1,122 of 21,186 parameters trainable (5.30%);",
                                        "  18,210 once all blocks unfreeze; 2 blocks; device cpu"]
    assert fit_phrases(phrases, 120) == ["[bold]gradual[/]: " + "; ".join(phrases).split(": ", 1)[1]]
    assert fit_phrases(["short", "line"], 80) == ["short; line"]
    assert fit_phrases(["a phrase wider than the line"], 10) == ["a phrase wider than the line"]


def test_kept_checkpoints_line_breaks_between_phrases(tmp_path) -> None:
    """The line a failed run leaves (where its checkpoints are, how to continue) breaks between phrases at 80
    columns, never inside "--resume" or the path."""
    from types import SimpleNamespace

    from tunelab.orchestration.run_one import _keep_or_abandon

    out = StringIO()
    console = Console(width=80, file=out, force_terminal=True, color_system=None)
    root = tmp_path / "runs" / ".a-rather-long-run-name.staging" / "checkpoints"
    store = SimpleNamespace(names=lambda: ["step-10"], root=root)
    _keep_or_abandon(SimpleNamespace(abandon=lambda: None), store, RuntimeError("boom"), console)  # type: ignore[arg-type]
    lines = [line.rstrip() for line in ANSI.sub("", out.getvalue()).splitlines() if line.strip()]
    assert lines[0] == "the unfinished run's checkpoints are kept in", lines
    assert lines[1].strip() == f"{root};", lines  # wider than 80 alone: one line the terminal wraps, copied back whole
    assert lines[2] == "  continue it with --resume (or start over with --overwrite)", lines
