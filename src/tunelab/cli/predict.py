"""`tunelab predict`: one run or export, several adapters on one base, or an ensemble of runs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console

from tunelab.cli.errors import err_console
from tunelab.errors import TunelabError

__all__ = ["predict_command"]


def predict_command(
    run_dirs: Optional[list[Path]] = typer.Argument(None, metavar="RUN_DIR", help="A run directory (`tunelab train`) or an export "
                                                    "directory (`tunelab export`); with --ensemble, two or more runs."),
    input: Optional[Path] = typer.Option(None, "--input", help="CSV/JSONL/Parquet with the text column."),
    text: list[str] = typer.Option([], "--text", help="A text to classify (repeatable)."),
    adapter: list[str] = typer.Option([], "--adapter", help="NAME=RUN_DIR of an adapter run (repeatable): all "
                                      "adapters share one loaded base; each row names its adapter."),
    ensemble: bool = typer.Option(False, "--ensemble", help="Average the class probabilities of the RUN_DIRs "
                                  "(classification runs of one label set) and predict the most probable class."),
    output: Optional[Path] = typer.Option(None, "--output", help="Write predictions here (.csv or .jsonl)."),
    head: Optional[str] = typer.Option(None, "--head", help="The head of a multi-task run (tasks:) to predict with."),
) -> None:
    """Predict with a trained run or an export of one (or several adapters on one base, or an ensemble of runs);
    probabilities for every class."""
    from tunelab.serving.predict import write_predictions

    run_dirs = run_dirs or []
    if (input is None) == (not text):
        raise TunelabError("predict: give --input FILE or one or more --text T (one of them)")
    if (not run_dirs) == (not adapter):
        raise TunelabError("predict: give a RUN_DIR or one or more --adapter NAME=RUN_DIR (one of them)")
    if len(run_dirs) > 1 and not ensemble:
        raise TunelabError(f"predict: {len(run_dirs)} RUN_DIRs given; add --ensemble to average them, or give one")
    if head is not None and (adapter or ensemble):
        raise TunelabError(f"predict --head {head}: picks a head of one multi-task RUN_DIR, not with --adapter or --ensemble")
    if adapter and output is not None and output.suffix.lower() not in (".jsonl", ".json"):
        raise TunelabError(f"predict --output {output}: with --adapter write .jsonl (adapters may have different classes)")
    rows, task = _rows(run_dirs, adapter, ensemble, input, text, head)
    if output is None:
        console = Console()
        for row in rows:
            console.print(json.dumps(row), highlight=False, markup=False, soft_wrap=True)
    else:
        write_predictions(rows, output, task)
        err_console.print(f"wrote {len(rows)} predictions to {output}")


def _rows(run_dirs: list[Path], adapter: list[str], ensemble: bool, input: Optional[Path],
          text: list[str], head: Optional[str] = None) -> tuple[list[dict[str, Any]], Any]:
    from tunelab.serving.predict import predict_rows
    from tunelab.serving.predictor import load_predictor, predictor_of

    if ensemble:
        from tunelab.serving.ensemble import ensemble_rows, load_members

        members = load_members(run_dirs)
        return ensemble_rows(members, input_path=input, texts=text), members[0].task
    if adapter:
        from tunelab.serving.adapters import load_adapters, parse_adapter_specs

        rows, predictor = [], None
        for name, run in load_adapters(parse_adapter_specs(adapter)).items():
            predictor = predictor_of(run)
            rows += [{"adapter": name, **row} for row in predict_rows(predictor, input_path=input, texts=text)]
        return rows, predictor.task
    predictor = load_predictor(run_dirs[0], head=head)
    return predict_rows(predictor, input_path=input, texts=text), predictor.task
