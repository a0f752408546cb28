"""`tunelab pseudo-label`: a run labels unlabelled text; the rows it is sure of are written as training data."""

from __future__ import annotations

from pathlib import Path

import typer

from tunelab.cli.errors import err_console

__all__ = ["pseudo_label_command"]


def pseudo_label_command(
    run_dir: Path = typer.Argument(..., help="A classification run directory (or an export of one)."),
    input: Path = typer.Option(..., "--input", help="CSV/JSONL/Parquet with the run's text column; labels not needed."),
    min_confidence: float = typer.Option(0.9, "--min-confidence", help="Keep rows predicted with at least this "
                                         "probability."),
    output: Path = typer.Option(..., "--output", help="The labelled file to write (.csv or .jsonl), in the run's "
                                "text and label columns, ready to train on."),
    balance: bool = typer.Option(False, "--balance", help="Keep as many rows of each predicted class as of the "
                                 "rarest (the most confident of each)."),
) -> None:
    """Label unlabelled text with a trained run and keep the confident rows (self-training, domain adaptation)."""
    from tunelab.serving.pseudo_label import pseudo_label

    made = pseudo_label(run_dir, input, output, min_confidence, balance)
    labels = ", ".join(f"{name} {count}" for name, count in sorted(made.per_label.items()))
    err_console.print(f"wrote {made.kept} of {made.read} rows ({100 * made.kept / made.read:.1f}%) with probability "
                      f">= {min_confidence} to {made.path}: {labels}", highlight=False)
