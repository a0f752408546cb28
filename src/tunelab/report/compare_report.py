"""`report.html` of a compare directory, from its compare.json (written by `tunelab compare`) and the runs'
metrics.jsonl: the table of runs with links to each run's report, the per-strategy summary and verdict, the
metric against trainable parameters (log axis) and against train time (one point per strategy, seed standard
deviation as error bars), validation learning curves per strategy, and the data-fraction curves."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tunelab.atomic import atomic_write_text
from tunelab.report import _plots
from tunelab.report._files import read_result, validation_curve
from tunelab.report._html import esc, note, page, table

__all__ = ["write_compare_report", "render_compare_report"]

Section = tuple[str, str, str]


def write_compare_report(compare_dir: Path) -> Path:
    """Write `compare_dir/report.html` from `compare_dir/compare.json` and return its path."""
    compare_dir = Path(compare_dir)
    data = read_result(compare_dir, "compare.json", "rows", "tunelab compare", "a compare result")
    target = compare_dir / "report.html"
    atomic_write_text(target, render_compare_report(compare_dir, data))
    return target


def render_compare_report(compare_dir: Path, data: dict[str, Any]) -> str:
    metric = str(data.get("metric") or "metric")
    rows = [r for r in data["rows"] if isinstance(r, dict)]
    summary = [s for s in data.get("summary") or [] if isinstance(s, dict)]
    sections = [_runs_section(compare_dir, rows, metric), _summary_section(data, summary, metric),
                _cost_section(summary, metric, "params", "trainable_params", "trainable parameters (log)", True),
                _cost_section(summary, metric, "time", "train_time_s", "train time (s)", False),
                _curves_section(compare_dir, rows, metric), _fractions_section(summary, metric)]
    if data.get("skipped"):
        sections.append(("skipped", "Skipped strategies",
                         table(["strategy", "reason"], [(s.get("strategy"), s.get("reason")) for s in data["skipped"]])))
    verdict = data.get("verdict") or {}
    headline = f"verdict: {verdict.get('strategy')} ({verdict.get('reason', '')})" if verdict else "no verdict"
    strategies = sorted({str(r.get("strategy")) for r in rows})
    facts = [("metric", metric), ("runs", len(rows)), ("failed", sum(r.get("status") == "failed" for r in rows)),
             ("strategies", ", ".join(strategies))]
    return page(f"tunelab compare: {compare_dir.name}", facts, headline, sections)


def _link(compare_dir: Path, row: dict[str, Any]) -> str:
    """The row's name, linked to its run's report.html when that file exists (relative href)."""
    name = esc(row.get("name", "?"))
    run_dir = row.get("run_dir")
    if not run_dir or not (compare_dir / str(run_dir) / "report.html").is_file():
        return name
    href = (Path(str(run_dir)) / "report.html").as_posix()
    return f'<a href="{esc(href)}">{name}</a>'


def _runs_section(compare_dir: Path, rows: list[dict[str, Any]], metric: str) -> Section:
    header = ["run", "strategy", "seed", "data fraction", "status", f"test {metric}", "best validation",
              "trainable", "train time (s)", "peak RSS (MiB)", "model bytes", "epochs"]
    body = []
    for r in rows:
        failed = r.get("status") == "failed"
        status = f'<span class="failed">failed: {esc(r.get("error") or "")}</span>' if failed else esc(r.get("status"))
        body.append((_link(compare_dir, r), r.get("strategy"), r.get("seed"), r.get("data_fraction"), status,
                     (r.get("test") or {}).get(metric), r.get("best_validation"), r.get("trainable_params"),
                     r.get("train_time_s"), r.get("peak_rss_mb"), r.get("model_bytes"), r.get("epochs_run")))
    return "runs", "Runs", table(header, body, raw_columns=(0, 4))


def _summary_section(data: dict[str, Any], summary: list[dict[str, Any]], metric: str) -> Section:
    header = ["strategy", "data fraction", f"mean {metric}", "std", "n", "within noise of best", "train time (s)",
              "trainable", "model bytes"]
    body = [(s.get("strategy"), s.get("data_fraction"), s.get("mean"), s.get("std"), s.get("n"),
             "yes" if s.get("within_noise_of_best") else "no", s.get("train_time_s"), s.get("trainable_params"),
             s.get("model_bytes")) for s in summary]
    verdict = data.get("verdict") or {}
    parts = [note(f"verdict: {verdict.get('strategy')}: {verdict.get('reason', '')}")] if verdict else []
    if data.get("noise_test"):
        parts.append(note(f"noise test: {data['noise_test']}"))
    return "summary", "Summary per strategy", "".join(parts) + table(header, body)


def _at_full_data(summary: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per strategy, its summary row at the largest data fraction it ran."""
    best: dict[str, dict[str, Any]] = {}
    for s in summary:
        key = str(s.get("strategy"))
        if key not in best or float(s.get("data_fraction") or 0) > float(best[key].get("data_fraction") or 0):
            best[key] = s
    return list(best.values())


def _cost_section(summary: list[dict[str, Any]], metric: str, section_id: str, key: str, xlabel: str,
                  log_x: bool) -> Section:
    title = f"{metric} against {xlabel.replace(' (log)', '')}"
    points = [(str(s.get("strategy")), float(s[key]), float(s["mean"]), float(s.get("std") or 0.0))
              for s in _at_full_data(summary) if _number(s.get(key)) and _number(s.get("mean"))
              and (not log_x or float(s[key]) > 0)]
    if not points:
        return section_id, title, note("no finished strategy to plot")
    plot = _plots.errorbar_plot(points, name=section_id, xlabel=xlabel, ylabel=f"test {metric} (mean ± std over seeds)",
                                log_x=log_x)
    return section_id, title, plot


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _curves_section(compare_dir: Path, rows: list[dict[str, Any]], metric: str) -> Section:
    """Validation `metric` per epoch, one line per run, one colour per strategy."""
    title = "Learning curves (validation, per epoch)"
    curves = []
    for r in rows:
        if r.get("status") == "failed" or not r.get("run_dir"):
            continue
        epochs, values = validation_curve(compare_dir / str(r["run_dir"]), metric)
        if epochs:
            curves.append((str(r.get("strategy")), epochs, values, None))
    if not curves:
        return "curves", title, note(f"no run logged validation {metric}")
    return "curves", title, _plots.curves_plot(curves, name="curves", xlabel="epoch", ylabel=f"validation {metric}")


def _fractions_section(summary: list[dict[str, Any]], metric: str) -> Section:
    title = "Data-fraction curves"
    by_strategy: dict[str, list[dict[str, Any]]] = {}
    for s in summary:
        if _number(s.get("data_fraction")) and _number(s.get("mean")):
            by_strategy.setdefault(str(s.get("strategy")), []).append(s)
    fractions = {float(s["data_fraction"]) for group in by_strategy.values() for s in group}
    if len(fractions) < 2:
        return "fractions", title, note("one data fraction only: run compare with several to see these curves")
    curves = []
    for strategy, group in by_strategy.items():
        group.sort(key=lambda s: float(s["data_fraction"]))
        curves.append((strategy, [float(s["data_fraction"]) for s in group], [float(s["mean"]) for s in group],
                       [float(s.get("std") or 0.0) for s in group]))
    return "fractions", title, _plots.curves_plot(curves, name="fractions", xlabel="fraction of the training data",
                                                  ylabel=f"test {metric} (mean ± std)", log_x=True)
