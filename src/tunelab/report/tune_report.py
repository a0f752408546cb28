"""`report.html` of a search directory, from its tune.json (written by `tunelab tune`): the optimisation
history with pruned trials marked and the best-so-far line, the parameter importances, the slice plot of the
learning rate, and the table of trials with links to each trial's report. No optuna needed: the importances
were computed by the search and saved with it."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from tunelab.atomic import atomic_write_text
from tunelab.report import _plots
from tunelab.report._files import read_result
from tunelab.report._html import esc, note, page, table

__all__ = ["write_tune_report", "render_tune_report"]

Section = tuple[str, str, str]
_MARKS = {"COMPLETE": ("o", "finished"), "PRUNED": ("x", "pruned"), "FAIL": ("s", "failed")}


def write_tune_report(tune_dir: Path) -> Path:
    tune_dir = Path(tune_dir)
    data = read_result(tune_dir, "tune.json", "trials", "tunelab tune", "a search result")
    target = tune_dir / "report.html"
    atomic_write_text(target, render_tune_report(tune_dir, data))
    return target


def render_tune_report(tune_dir: Path, data: dict[str, Any]) -> str:
    metric, trials = str(data.get("metric") or "metric"), [t for t in data["trials"] if isinstance(t, dict)]
    higher = data.get("direction") == "maximize"
    sections = [_history_section(trials, metric, higher), _importance_section(data),
                _slice_section(trials, metric), _trials_section(tune_dir, trials, metric)]
    best = data.get("best") or {}
    facts = [("trials", len(trials)), ("pruned", sum(t.get("state") == "PRUNED" for t in trials)),
             ("sampler", data.get("sampler", "?")), ("pruner", data.get("pruner", "?")),
             ("wall time", f"{data.get('wall_time_s', 0):.0f} s")]
    headline = (f"best: trial {best['number']}, validation {metric} {best['value']:.4f}"
                if best.get("value") is not None else "no trial finished")
    return page(f"tunelab tune: {tune_dir.name}", facts, headline, [s for s in sections if s[2]])


def _history_section(trials: list[dict[str, Any]], metric: str, higher: bool) -> Section:
    """Each trial's score (a pruned trial: its last reported epoch) and the best finished score so far."""
    def draw() -> str:
        fig, ax = _plots.figure(7.0, 3.2)
        for state, (marker, label) in _MARKS.items():
            points = [(t["number"], _score(t)) for t in trials if t.get("state") == state and _score(t) is not None]
            if points:
                ax.scatter(*zip(*points), marker=marker, label=label)
        best, line = None, []
        for t in sorted(trials, key=lambda t: t["number"]):
            if t.get("state") == "COMPLETE" and t.get("value") is not None:
                best = t["value"] if best is None else (max if higher else min)(best, t["value"])
            line.append((t["number"], best))
        xs = [n for n, v in line if v is not None]
        ax.step(xs, [v for _, v in line if v is not None], where="post", label="best so far")
        _plots._integer_ticks(ax)
        ax.set_xlabel("trial")
        ax.set_ylabel(f"validation {metric}")
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0))
        return _plots.to_svg(fig, "history")
    return ("history", "Optimisation history", _plots._styled(draw) if trials else "")


def _score(trial: dict[str, Any]) -> Optional[float]:
    if trial.get("value") is not None:
        return float(trial["value"])
    steps = trial.get("intermediate") or {}
    return float(steps[max(steps, key=int)]) if steps else None


def _importance_section(data: dict[str, Any]) -> Section:
    importances = data.get("importances") or {}
    if not importances:
        return ("importance", "Parameter importances", note("Importances need at least two finished trials."))
    names = list(importances)
    return ("importance", "Parameter importances",
            _plots.bars(names, {"importance": [importances[n] for n in names]}, name="importance",
                        ylabel="share of the score's variance") + note(str(data.get("importance_method", ""))))


def _slice_section(trials: list[dict[str, Any]], metric: str) -> Section:
    """The score against the learning rate (log axis), by trial state."""
    key = next((k for t in trials for k in t.get("params", {}) if k.endswith(".lr")), None)
    if key is None:
        return ("slice", "Learning rate", "")

    def draw() -> str:
        fig, ax = _plots.figure(7.0, 3.2)
        for state, (marker, label) in _MARKS.items():
            points = [(t["params"][key], _score(t)) for t in trials
                      if t.get("state") == state and key in t.get("params", {}) and _score(t) is not None]
            if points:
                ax.scatter(*zip(*points), marker=marker, label=label)
        ax.set_xscale("log")
        ax.tick_params(axis="x", which="both", labelrotation=30)
        ax.set_xlabel(key)
        ax.set_ylabel(f"validation {metric}")
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0))
        return _plots.to_svg(fig, "slice")
    return ("slice", f"Slice: {key}", _plots._styled(draw))


def _trials_section(tune_dir: Path, trials: list[dict[str, Any]], metric: str) -> Section:
    names = sorted({k for t in trials for k in t.get("params", {})})
    rows = []
    for t in trials:
        run = t.get("run_dir")
        link = (f'<a href="{esc(run)}/report.html">{t["number"]}</a>'
                if run and (tune_dir / run / "report.html").is_file() else esc(t["number"]))
        rows.append([link, str(t.get("state", "")).lower(), t.get("value"),
                     *(t.get("params", {}).get(n) for n in names), t.get("train_time_s")])
    header = ["trial", "state", f"validation {metric}", *names, "train s"]
    return ("trials", "Trials", table(header, rows, raw_columns=(0,)) if rows else "")

