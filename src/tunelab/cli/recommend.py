"""`tunelab recommend`: the command and its table (the scores per backbone and depth, then the plan with
each decision's reason)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from tunelab.cli.errors import err_console
from tunelab.cli.tables import experiment_config, experiment_out, parse_csv

__all__ = ["recommend_command", "recommend_table", "sparkline"]


def recommend_command(
    config: Optional[Path] = typer.Argument(None, help="YAML run config: task, data and budget (its model is one candidate)."),
    models: Optional[str] = typer.Option(None, "--models", help="Comma-separated candidate backbones: built-in names "
                                         "or model directories (default: the config's model, minilm, paraphrase-minilm-l3)."),
    write_config: Optional[Path] = typer.Option(None, "--write-config", help="Also write the recommended run config here."),
    max_examples: int = typer.Option(1000, "--max-examples", min=10, help="Stratified sample of the training split "
                                     "each backbone reads."),
    out: Optional[Path] = typer.Option(None, "--out", help="Folder of recommend.json (default: the config's output + "
                                       "'-recommend')."),
    no_warm: bool = typer.Option(False, "--no-warm", help="Do not build the plan's frozen features into the cache."),
    demo: bool = typer.Option(False, "--demo", help="Recommend for the built-in demo: BBC News."),
    trust_pickle: bool = typer.Option(False, "--trust-pickle", help="Accept pickle weights (see train)."),
) -> None:
    """Score candidate backbones at every depth from one frozen pass each, and write the plan to train."""
    from tunelab.orchestration.recommend import RecommendRequest, recommend
    from tunelab.orchestration.recommend_output import write_recommendation

    source, raw = experiment_config("recommend", config, demo)
    request = RecommendRequest(out=experiment_out(out, raw, "recommend"),
                               models=parse_csv(models, str, "--models") if models else None,
                               max_examples=max_examples, write_config=write_config, warm=not no_warm,
                               trust_pickle=trust_pickle)
    result = recommend(raw, request, console=err_console, source=str(source))
    record = write_recommendation(result, write_config)
    printer = Console()
    printer.print(recommend_table(record))
    print_plan(record, printer)
    printer.print(f"{result.out / 'recommend.json'}  ({result.seconds:.0f} s in all); train the plan with: "
                  f"tunelab train {write_config or result.out / 'recommended.yaml'}")


def recommend_table(record: dict[str, Any]) -> Table:
    sample = record["sample"]
    table = Table(title=f"tunelab recommend: {sample['examples']} of {sample['of_train']} training examples, "
                        "LogME per depth (0: embeddings)")
    for column in ("rank", "backbone", "blocks", "LogME by depth", "best @depth", "H-score", "probe F1", "s"):
        table.add_column(column, no_wrap=column in ("LogME by depth", "best @depth"))
    for rank, b in enumerate(record["backbones"], start=1):
        last = b["depths"][-1]
        curve = sparkline([d["logme"] for d in b["depths"]])
        table.add_row(str(rank), b["model"], str(b["blocks"]), curve, f"{b['score']:.3f} @{b['best_depth']}",
                      f"{last['h_score']:.1f}", f"{last['probe_macro_f1']:.3f}±{last['probe_std']:.3f}",
                      f"{b['seconds']:.1f}")
    return table


_BARS = "▁▂▃▄▅▆▇█"


def sparkline(values: list[float]) -> str:
    """One bar per depth, from the lowest to the highest value of this backbone's own curve."""
    low, high = min(values), max(values)
    span = (high - low) or 1.0
    return "".join(_BARS[round((v - low) / span * (len(_BARS) - 1))] for v in values)


def print_plan(record: dict[str, Any], printer: Console) -> None:
    plan = record["plan"]
    low, high = plan["expected_test_macro_f1"]
    printer.print(f"[bold]plan:[/] {plan['model']}, {plan['strategy']}; expected test macro-F1 {low:.3f} .. {high:.3f}")
    for key, value in plan["overrides"].items():
        printer.print(f"  {key} = {value}")
    for key, reason in plan["reasons"].items():
        printer.print(f"  [dim]{key}:[/] {escape(reason)}")
    for line in record["warnings"]:
        printer.print(f"[yellow]warning:[/] {escape(line)}")
    if record["warm"]:
        printer.print(f"cache: {escape(record['warm']['summary'])} ({record['warm']['seconds']:.1f} s)")
