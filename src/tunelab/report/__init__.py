"""Self-contained HTML reports (inline SVG plots, no network) of run and compare directories, built from their
files alone: `write_run_report(RUN_DIR)`, `write_compare_report(COMPARE_DIR)`, or `write_report(DIR)`, which
tells which kind of directory it was given. matplotlib is imported only when a report is drawn."""

from __future__ import annotations

from pathlib import Path

from tunelab.report._files import ReportError, directory_kind
from tunelab.report.compare_report import write_compare_report
from tunelab.report.continual_report import write_continual_report
from tunelab.report.run_report import write_run_report
from tunelab.report.tune_report import write_tune_report

__all__ = ["write_run_report", "write_compare_report", "write_tune_report", "write_continual_report", "write_report",
           "directory_kind", "ReportError"]


def write_report(folder: Path) -> Path:
    """The report of a compare directory (it has compare.json), a search directory (tune.json), a task sequence
    (continual.json) or a run
    directory (manifest.json);
    a ReportError naming the folder and what is missing otherwise."""
    folder = Path(folder)
    kind = directory_kind(folder)
    if kind == "compare":
        return write_compare_report(folder)
    if kind == "tune":
        return write_tune_report(folder)
    if kind == "continual":
        return write_continual_report(folder)
    return write_run_report(folder)
