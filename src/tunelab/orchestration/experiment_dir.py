"""The folder of an experiment that holds many runs (a comparison, a search): one check of `--out` against
`--resume` / `--overwrite` before anything is trained, and one report writer that never fails the experiment
it draws. compare and tune differ only in the file that marks a folder as theirs and in their words."""

from __future__ import annotations

import shutil
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from tunelab.errors import ConfigError

__all__ = ["check_experiment_out", "write_experiment_report"]


def check_experiment_out(out: Path, *, resume: bool, overwrite: bool, marker: str, noun: str,
                         replaces: str, clear: bool = False) -> None:
    """Refuse `--resume` on a folder without `marker` and a fresh start on a folder that holds files unless
    `--overwrite`; with `clear`, an overwritten folder is emptied now (a search's study starts over, while a
    comparison replaces its rows one by one)."""
    if resume and not (out / marker).is_file():
        raise ConfigError(f"--resume: {out} holds no {marker}, so there is no {noun} to continue; drop --resume")
    if resume or not out.is_dir() or not any(out.iterdir()):
        return
    if not overwrite:
        raise ConfigError(f"--out: {out} already holds files (an earlier {noun}?); continue it with --resume, "
                          f"pass --overwrite to {replaces}, or choose another folder")
    if clear:
        shutil.rmtree(out)


def write_experiment_report(out: Path, console: Console, noun: str) -> None:
    """The experiment's report.html; a report that cannot be drawn prints one warning, as the files it reads
    are written already and `tunelab report` can retry."""
    from tunelab.report import write_report

    try:
        console.print(f"report: {write_report(out)}")
    except Exception as err:  # noqa: BLE001 - never fail the experiment over its page
        console.print(f"[yellow]warning:[/] the {noun} report could not be drawn ({escape(str(err))}); "
                      f"rebuild it with: tunelab report {out}")
