"""`tunelab continual`: the command and its tables (per strategy, the matrix R and its summary)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from tunelab.cli.errors import err_console

__all__ = ["continual_command", "sequence_tables"]


def continual_command(
    sequence: Path = typer.Argument(..., help="SEQUENCE.yaml: one backbone, its tasks in order, the strategies."),
    out: Optional[Path] = typer.Option(None, "--out", help="Sequence folder (default: the file's output:)."),
    resume: bool = typer.Option(False, "--resume", help="Skip the steps that finished, continue from there."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an earlier sequence in --out."),
) -> None:
    """Learn tasks one after another with each strategy; the matrix R (every earlier task's test score after
    each step), average accuracy, forgetting and backward transfer."""
    from tunelab.config.sequence import load_sequence
    from tunelab.orchestration.continual import RESULT_FILE, ContinualRequest, continual

    spec = load_sequence(sequence)
    request = ContinualRequest(out=out or Path(spec.output), resume=resume, overwrite=overwrite)
    result = continual(spec, request, console=err_console)
    console = Console()
    for table in sequence_tables(result):
        console.print(table)
    console.print(f"{request.out / RESULT_FILE}")


def sequence_tables(result: dict[str, Any]) -> list[Table]:
    """The summary (one row per strategy), then each strategy's R (rows: tasks; columns: after each step)."""
    tasks, metric = result["tasks"], result["metric"]
    summary = Table(title=f"task sequence: {' -> '.join(tasks)} (test {metric})")
    for name in ("strategy", "average accuracy", "average forgetting", "backward transfer", "last task", "train s"):
        summary.add_column(name, justify="left" if name == "strategy" else "right")
    for row in result["strategies"]:
        s = row["summary"]
        summary.add_row(row["spec"], *(_fmt(s[k]) for k in ("average_accuracy", "average_forgetting",
                                                           "backward_transfer", "last_task")), f"{row['train_time_s']:.0f}")
    tables = [summary]
    for row in result["strategies"]:
        matrix = Table(title=escape(f"{row['spec']}: R[task][after step]"))
        matrix.add_column("task")
        for name in tasks:
            matrix.add_column(f"after {name}", justify="right")
        for i, name in enumerate(tasks):
            matrix.add_row(name, *(_fmt(v) for v in row["R"][i]))
        tables.append(matrix)
    return tables


def _fmt(value: Optional[float]) -> str:
    return "" if value is None else f"{value:.4f}"
