"""What the experiment commands print and parse: the search's trial table and comma-separated option values."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console
from rich.table import Table

from tunelab.errors import TunelabError

__all__ = ["print_tune", "parse_csv", "experiment_config", "experiment_out"]


def print_tune(result: Any, out_console: Console) -> None:
    table = Table(title=f"tunelab tune: validation {result.metric} ({result.direction})")
    for column in ("trial", "state", result.metric, "train s", "params"):
        table.add_column(column)
    for t in result.trials:
        value = "" if t["value"] is None else f"{t['value']:.4f}"
        params = ", ".join(f"{k.rsplit('.', 1)[-1]}={v:.3g}" if isinstance(v, float) else f"{k.rsplit('.', 1)[-1]}={v}"
                           for k, v in t["params"].items())
        table.add_row(str(t["number"]), t["state"].lower(), value, str(t.get("train_time_s", "")), params)
    out_console.print(table)
    if result.best is not None:
        test = {k: round(v, 4) for k, v in result.best["test"].items() if isinstance(v, float)}
        out_console.print(f"best: trial {result.best['number']} (validation {result.best['value']:.4f}); test {test}")
        out_console.print(f"{result.out / 'best.yaml'}: train it with tunelab train {result.out / 'best.yaml'}")
    else:
        out_console.print("[red]no trial finished[/]")
        raise typer.Exit(1)


def parse_csv(text: str, kind: type, option: str) -> list:
    try:
        return [kind(part.strip()) for part in text.split(",") if part.strip()]
    except ValueError:
        raise TunelabError(f"{option} {text!r}: expected comma-separated {kind.__name__} values") from None


def experiment_config(command: str, config: Optional[Path], demo: bool) -> tuple[Path, dict[str, Any]]:
    """The config file an experiment command reads (CONFIG, or the built-in demo's with --demo) and its raw
    mapping, before overrides: compare and recommend replace its strategy section per run."""
    from tunelab.config.loading import read_config_file
    from tunelab.configs import DEMO_CONFIG

    if demo == (config is not None):
        raise TunelabError(f"{command}: give a CONFIG file or --demo (one of them)")
    source = DEMO_CONFIG if demo else config
    assert source is not None
    return source, read_config_file(source)


def experiment_out(out: Optional[Path], raw: dict[str, Any], suffix: str) -> Path:
    """An experiment's folder: `--out`, else the config's output with `-<suffix>` (`runs/demo-compare`)."""
    return Path(out or f"{raw.get('output', 'runs/latest')}-{suffix}").expanduser().resolve()
