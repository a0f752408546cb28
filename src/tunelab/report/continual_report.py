"""`report.html` of a task-sequence directory, from its continual.json (written by `tunelab continual`): the
summary per strategy (average accuracy, average forgetting, backward transfer, the last task's score), each
strategy's matrix R as a heatmap, every task's score over the steps per strategy, and the steps' costs."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import numpy as np

from tunelab.atomic import atomic_write_text
from tunelab.report import _plots
from tunelab.report._files import read_result
from tunelab.report._html import esc, page, table

__all__ = ["write_continual_report", "render_continual_report"]

Section = tuple[str, str, str]
_SUMMARY = (("average_accuracy", "average accuracy"), ("average_forgetting", "average forgetting"),
            ("backward_transfer", "backward transfer"), ("last_task", "last task"))


def write_continual_report(folder: Path) -> Path:
    folder = Path(folder)
    data = read_result(folder, "continual.json", "strategies", "tunelab continual", "a task sequence")
    target = folder / "report.html"
    atomic_write_text(target, render_continual_report(folder, data))
    return target


def render_continual_report(folder: Path, data: dict[str, Any]) -> str:
    tasks, metric = list(data.get("tasks", [])), str(data.get("metric", "metric"))
    rows = [r for r in data["strategies"] if isinstance(r, dict)]
    sections = [_summary_section(rows, metric), _matrix_section(rows, tasks, metric),
                _curves_section(rows, tasks, metric), _steps_section(folder, rows)]
    best = max(rows, key=lambda r: r["summary"]["average_accuracy"], default=None)
    headline = (f"highest average {metric}: {best['spec']} ({best['summary']['average_accuracy']:.4f}), forgetting "
                f"{best['summary']['average_forgetting']:.4f}" if best else "no strategy finished")
    facts = [("tasks", " -> ".join(tasks)), ("strategies", len(rows)), ("metric", metric),
             ("wall time", f"{data.get('wall_time_s', 0):.0f} s")]
    return page(f"tunelab continual: {folder.name}", facts, headline, [s for s in sections if s[2]])


def _summary_section(rows: list[dict[str, Any]], metric: str) -> Section:
    body = table(["strategy", *(label for _, label in _SUMMARY), "train s"],
                 [[r["spec"], *(r["summary"].get(k) for k, _ in _SUMMARY), r.get("train_time_s")] for r in rows])
    explain = ("<p>Average accuracy: the mean of every task's last score. Average forgetting: the mean drop from "
               "a task's best score to its last (Chaudhry et al., 2018). Backward transfer: the mean of last minus "
               f"own-step score (GEM); negative when later tasks cost earlier ones. All in test {esc(metric)}.</p>")
    return "summary", "Summary", body + explain


def _matrix_section(rows: list[dict[str, Any]], tasks: list[str], metric: str) -> Section:
    """R per strategy: rows are tasks, columns the step after which they were scored."""
    if not rows:
        return "matrices", "R matrices", ""

    def draw() -> str:
        fig, axes = _plots.figure(3.2 * len(rows), 3.0, ncols=len(rows))
        for ax, row in zip(np.atleast_1d(axes), rows):
            values = np.array([[np.nan if v is None else v for v in line] for line in row["R"]], dtype=float)
            ax.imshow(values, cmap="viridis", vmin=np.nanmin(values), vmax=np.nanmax(values))
            ax.set_title(row["spec"])
            ax.set_xticks(range(len(tasks)), [f"after {t}" for t in tasks], rotation=30, ha="right")
            ax.set_yticks(range(len(tasks)), tasks)
            ax.grid(False)
            for (i, j), v in np.ndenumerate(values):
                if not np.isnan(v):
                    ax.text(j, i, f"{v:.3f}", ha="center", va="center", fontsize=7, color="white")
        return _plots.to_svg(fig, "matrices")
    return "matrices", f"R matrices (test {metric})", _plots._styled(draw)


def _curves_section(rows: list[dict[str, Any]], tasks: list[str], metric: str) -> Section:
    """Each task's score from the step it was learnt on, one panel per task, one line per strategy."""
    if not rows or len(tasks) < 2:
        return "curves", "Scores over the sequence", ""

    def draw() -> str:
        fig, axes = _plots.figure(3.0 * len(tasks), 3.0, ncols=len(tasks))
        for i, (ax, task) in enumerate(zip(np.atleast_1d(axes), tasks)):
            for row in rows:
                ax.plot(range(i, len(tasks)), [row["R"][i][j] for j in range(i, len(tasks))], "o-", ms=3,
                        label=row["spec"])
            ax.set_title(task)
            ax.set_xticks(range(len(tasks)), [f"after {t}" for t in tasks], rotation=30, ha="right")
        np.atleast_1d(axes)[-1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
        return _plots.to_svg(fig, "curves")
    return "curves", f"Each task's test {metric} over the sequence", _plots._styled(draw)


def _steps_section(folder: Path, rows: list[dict[str, Any]]) -> Section:
    lines = []
    for row in rows:
        for step in row.get("steps", []):
            run = step.get("run_dir")
            link = f'<a href="{esc(run)}/report.html">{esc(run)}</a>' if run and (folder / run / "report.html").is_file() \
                else esc(run)
            guard = step.get("guard") or {}
            lines.append([row["spec"], step.get("task"), link, step.get("shared_with") or "", step.get("train_time_s"),
                          _guard_cost(guard), step.get("peak_rss_mb")])
    return "steps", "Steps", table(["strategy", "task", "run", "same run as", "train s", "guard cost", "peak RSS MiB"],
                                   lines, raw_columns=(2,))


def _guard_cost(guard: dict[str, Any]) -> Optional[str]:
    if not guard:
        return None
    parts = [guard.get("name", "")]
    for key, unit in (("fisher_s", "s Fisher"), ("penalty_s", "s penalty"), ("replay_s", "s replay"),
                      ("state_mb", "MiB state")):
        if guard.get(key) is not None:
            parts.append(f"{guard[key]} {unit}")
    return ", ".join(parts)
