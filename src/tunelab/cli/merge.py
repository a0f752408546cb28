"""`tunelab merge`: runs of one base model merged in weight space, chosen on validation, scored on test."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from tunelab.cli.errors import err_console

__all__ = ["merge_command"]


def merge_command(
    sources: list[Path] = typer.Argument(..., metavar="RUN_DIR...", help="Runs of one base model, task and label "
                                         "set (full fine-tunes, LoRA / IA3 / BitFit runs ...), or a compare or tune "
                                         "folder standing for its finished rows."),
    method: str = typer.Option(..., "--method", help="linear | task_arithmetic | ties | greedy_soup"),
    out: Path = typer.Option(..., "--out", help="The merged run directory to write."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --out when the merge succeeds."),
) -> None:
    """Merge runs in weight space (weighted mean, task arithmetic, TIES, greedy soup); the weights are chosen on
    the validation split, the merge and each run are scored on the test split; --out is a run directory."""
    from tunelab.orchestration.merge import MergeRequest, merge

    record = merge(MergeRequest(sources=list(sources), method=method, out=out, overwrite=overwrite),
                   console=err_console)
    Console().print(_table(record))
    chosen = record["chosen"]
    what = ", ".join(f"{k} {v}" for k, v in chosen.items() if k not in ("validation", "validation_loss", "seconds"))
    err_console.print(f"chosen on validation: {what} (validation {record['metric']} {chosen['validation']:.4f}); "
                      f"{record['seconds']['load_s'] + record['seconds']['search_s']:.1f} s to load the runs and "
                      f"search, {record['seconds']['total_s']:.1f} s in all", highlight=False)
    for item in record["skipped"]:
        err_console.print(f"skipped {item['run']}: {item['reason']}", highlight=False, markup=False)


def _table(record: dict[str, Any]) -> Table:
    metric = record["metric"]
    table = Table(title=f"merge ({record['method']}): validation and test {metric}")
    for column in ("model", "strategy", f"validation {metric}", f"test {metric}", "test accuracy"):
        table.add_column(column)
    show = lambda metrics, key: f"{metrics[key]:.4f}" if isinstance(metrics.get(key), (int, float)) else "-"  # noqa: E731
    for run in record["runs"]:
        table.add_row(run["run"], run["strategy"], show(run["validation"], metric), show(run["test"], metric),
                      show(run["test"], "accuracy"))
    chosen = record["chosen"]
    table.add_row("[bold]merge[/]", record["method"], show(chosen, "validation"), show(record["test"], metric),
                  show(record["test"], "accuracy"))
    return table
