"""`report.html` of one run directory, from its files alone (no model, no data): training loss and learning
rate per step, validation metrics per epoch with the best epoch marked, the test metrics (confusion matrix,
per-class or per-type scores), the data, trainable parameters per LayerStack block, the config, and the
task's own view (regression scatter, generations before / after, misclassified images)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from tunelab.artifacts.rundir import target_of_staging
from tunelab.atomic import atomic_write_text
from tunelab.report import _plots
from tunelab.report._files import RunFiles, read_run
from tunelab.report._html import esc, note, page, table
from tunelab.report._task_sections import data_section, parameters_section, score_table, task_sections

__all__ = ["write_run_report", "render_run_report"]

Section = tuple[str, str, str]  # (id, title, inner html)
_MAX_LINES = 6  # validation scores on one plot (the table has them all)
# logged numbers that are errors or counts, not scores in [0, 1]: never drawn on the scores plot
_NOT_SCORES = {"loss", "train_loss", "mse", "rmse", "mae", "perplexity", "target_tokens", "entities", "truncated_words"}


def write_run_report(run_dir: Path) -> Path:
    """Write `run_dir/report.html` from the run's files and return its path. `run_dir` must hold
    manifest.json; every other file is optional (its section then says what is missing)."""
    run_dir = Path(run_dir)
    target = run_dir / "report.html"
    atomic_write_text(target, render_run_report(read_run(run_dir)))
    return target


def render_run_report(run: RunFiles) -> str:
    sections = [_test_section(run), _loss_section(run), _validation_section(run), *_class_sections(run),
                *task_sections(run), data_section(run), parameters_section(run), _config_section(run)]
    name = (target_of_staging(run.folder) or run.folder).name  # written at run time, inside the staging folder
    return page(f"tunelab run: {name}", _facts(run), _headline(run), [s for s in sections if s])


def _facts(run: RunFiles) -> list[tuple[str, Any]]:
    manifest = run.manifest
    trainable, total = manifest.get("trainable_params"), manifest.get("total_params")
    share = f" ({100 * trainable / total:.2f}%)" if isinstance(trainable, int) and total else ""
    facts = [("strategy", manifest.get("strategy", "?")), ("task", run.task or "?"),
             ("model", Path(str(manifest.get("base_model", "?"))).name),
             ("epochs", manifest.get("epochs_run", "?")),
             ("trainable", f"{trainable:,}{share}" if isinstance(trainable, int) else "?"),
             ("train time", f"{manifest.get('train_time_s', 0):.1f} s")]
    return facts


def _headline(run: RunFiles) -> str:
    value = run.test.get(run.metric)
    if isinstance(value, (int, float)):
        return f"test {run.metric}: {value:.4f}"
    best = run.manifest.get("best_metric")
    return f"best validation {run.metric}: {best:.4f}" if isinstance(best, (int, float)) else "no test metrics"


def _scalars(metrics: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def _test_section(run: RunFiles) -> Section:
    scalars = _scalars(run.test)
    if not scalars:
        return "test", "Test metrics", note("no test_metrics.json (or no test split): nothing was scored")
    rows = [(k, v) for k, v in scalars.items()]
    return "test", "Test metrics", table(["metric", "value"], rows)


def _loss_section(run: RunFiles) -> Section:
    if not run.train:
        return "loss", "Training loss and learning rate", note("metrics.jsonl has no training steps")
    steps = [int(m["step"]) for m in run.train]
    val = [m for m in run.validation if isinstance(m.get("loss"), (int, float))]
    plot = _plots.loss_plot(steps, [float(m["loss"]) for m in run.train], [float(m.get("lr", 0.0)) for m in run.train],
                            [int(m["step"]) for m in val], [float(m["loss"]) for m in val])
    return "loss", "Training loss and learning rate", plot


def _validation_section(run: RunFiles) -> Section:
    title = "Validation metrics per epoch"
    if not run.validation:
        return "validation", title, note("no validation epochs were logged")
    epochs = [int(m["epoch"]) + 1 for m in run.validation]
    best = run.manifest.get("best_epoch")
    best_epoch = best + 1 if isinstance(best, int) else None
    names = [k for k in run.validation[0] if k not in ("kind", "epoch", "step")
             and isinstance(run.validation[0][k], (int, float))]
    bounded = [k for k in names if k not in _NOT_SCORES
               and all(0.0 <= float(m.get(k, -1)) <= 1.0 for m in run.validation)]
    shown = sorted(bounded, key=lambda k: k != run.metric)[:_MAX_LINES]  # the headline metric first
    scores = {k: [float(m[k]) for m in run.validation] for k in shown}
    plots = [_plots.metric_lines(epochs, scores, name="validation-scores", xlabel="epoch", best_x=best_epoch,
                                 best_label=f"best epoch ({run.metric})")] if scores else []
    if run.metric not in scores and run.metric in names:
        series = {run.metric: [float(m[run.metric]) for m in run.validation]}
        plots.append(_plots.metric_lines(epochs, series, name="validation-metric", xlabel="epoch", best_x=best_epoch,
                                         best_label="best epoch"))
    rows = [(e, *[m.get(k) for k in names]) for e, m in zip(epochs, run.validation)]
    best_row = epochs.index(best_epoch) if best_epoch in epochs else None
    marked = note(f"best epoch: {best_epoch} ({run.metric} {_fmt(run.manifest.get('best_metric'))}), highlighted")
    return "validation", title, "".join(plots) + marked + table(["epoch", *names], rows, best_row=best_row)


def _fmt(value: Optional[float]) -> str:
    return f"{value:.4f}" if isinstance(value, (int, float)) else "?"


def _class_sections(run: RunFiles) -> list[Section]:
    """Confusion matrix (counts and row-normalised) and per-class precision / recall / F1, where scored."""
    sections: list[Section] = []
    labels = list(run.labels.get("labels") or [])
    matrix = run.test.get("confusion_matrix")
    if matrix and len(labels) == len(matrix):
        sections.append(("confusion", "Confusion matrix (test)", _plots.confusion_plot(matrix, labels)))
    per_class = run.test.get("per_class")
    if isinstance(per_class, dict) and per_class:
        sections.append(("per-class", "Per-class precision, recall and F1 (test)", score_table(per_class, "class")))
    return sections


def _config_section(run: RunFiles) -> Section:
    text = run.config_text or "(no config.yaml)"
    return "config", "Config (resolved)", f"<pre>{esc(text)}</pre>"
