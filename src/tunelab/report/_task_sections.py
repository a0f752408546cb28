"""Sections of a run report built from profile.json (data, parameters per block) and the task's own views:
entity-level scores per type (token tasks), predicted against true (regression), generations before and
after training (instruction tuning), misclassified test images (image classification)."""

from __future__ import annotations

import math
from typing import Any

from tunelab.report import _plots
from tunelab.report._files import RunFiles
from tunelab.report._html import note, table

__all__ = ["data_section", "parameters_section", "score_table", "task_sections"]

Section = tuple[str, str, str]
_NO_PROFILE = "no profile.json in this run directory (written by runs of tunelab 0.1 from this version on)"


def score_table(scores: dict[str, dict[str, Any]], what: str) -> str:
    """Bars and a table of precision / recall / F1 / support per name (classes, entity types)."""
    names = list(scores)
    series = {k: [float(scores[n].get(k, 0.0)) for n in names] for k in ("precision", "recall", "f1")}
    rows = [(n, scores[n].get("precision"), scores[n].get("recall"), scores[n].get("f1"), scores[n].get("support"))
            for n in names]
    return (_plots.bars(names, series, name=f"scores-{what}", ylabel="score")
            + table([what, "precision", "recall", "F1", "support"], rows))


def data_section(run: RunFiles) -> Section:
    """Examples and class counts per split; token lengths with the max_length cut and the share that reached it."""
    title = "Data"
    splits: dict[str, dict[str, Any]] = run.profile.get("splits") or {}
    if not splits:
        return "data", title, note(_NO_PROFILE)
    what = "tag (per word)" if run.profile.get("label_kind") == "tags" else "class"
    parts = [_class_counts(splits, what), _targets(splits)]
    lengths = {name: s["length_counts"] for name, s in splits.items() if s.get("length_counts")}
    max_length = int(run.profile.get("max_length") or 0)
    if lengths:
        shares = {name: float(s.get("truncated_share", 0.0)) for name, s in splits.items()}
        parts.append(_plots.length_plot(lengths, max_length, shares))
    if lengths:
        rows = [(name, s.get("examples"), _longest(s), s.get("truncated"), _percent(s.get("truncated_share")))
                for name, s in splits.items()]
        parts.append(table(["split", "examples", "longest (tokens)", f"at max_length {max_length}", "share"], rows))
    else:
        parts.append(table(["split", "examples"], [(name, s.get("examples")) for name, s in splits.items()]))
    return "data", title, "".join(parts)


def _longest(split: dict[str, Any]) -> Any:
    counts = split.get("length_counts") or []
    return len(counts) - 1 if counts else None


def _percent(value: Any) -> str:
    return f"{100 * value:.1f}%" if isinstance(value, (int, float)) else "–"


def _class_counts(splits: dict[str, dict[str, Any]], what: str) -> str:
    counted = {name: s["class_counts"] for name, s in splits.items() if s.get("class_counts")}
    if not counted:
        return ""
    classes = list(dict.fromkeys(c for counts in counted.values() for c in counts))
    series = {name: [counts.get(c, 0) for c in classes] for name, counts in counted.items()}
    rows = [(c, *[counts.get(c, 0) for counts in counted.values()]) for c in classes]
    return (_plots.bars(classes, series, name="class-counts", ylabel="examples")
            + table([what, *counted], rows))


def _targets(splits: dict[str, dict[str, Any]]) -> str:
    train = (splits.get("train") or {}).get("targets")
    if not train:
        return ""
    rows = [(name, *(s["targets"].get(k) for k in ("min", "max", "mean", "std")))
            for name, s in splits.items() if s.get("targets")]
    hist = train.get("histogram") or {}
    plot = _plots.histogram_plot(hist["counts"], hist["edges"], name="targets", xlabel="target (train)") if hist else ""
    return plot + table(["split", "min", "max", "mean", "std"], rows)


def parameters_section(run: RunFiles) -> Section:
    """Trainable and total parameters per LayerStack group at the first step."""
    title = "Trainable parameters per block (first step)"
    groups = (run.profile.get("parameters") or {}).get("groups") or []
    if not groups:
        return "parameters", title, note(_NO_PROFILE)
    names = [g["name"] for g in groups]
    plot = _plots.bars(names, {"total": [max(g["total"], 1) for g in groups],
                               "trainable": [max(g["trainable"], 0.5) for g in groups]},
                       name="parameters", ylabel="parameters (log)", log=True)
    rows = [(g["name"], g["trainable"], g["total"], _percent(g["trainable"] / g["total"] if g["total"] else 0.0))
            for g in groups]
    return "parameters", title, plot + table(["group", "trainable", "total", "trainable share"], rows)


def task_sections(run: RunFiles) -> list[Section]:
    sections = []
    per_type = run.test.get("per_type")
    if isinstance(per_type, dict) and per_type:
        sections.append(("entities", "Entity-level scores per type (test)", score_table(per_type, "entity type")))
    if run.task == "regression":
        sections.append(_scatter_section(run))
    if run.profile.get("generations") or (run.task == "instruction_tuning" and run.predictions):
        sections.append(_generations_section(run))
    if run.misclassified is not None:
        sections.append(_misclassified_section(run))
    return sections


def _scatter_section(run: RunFiles) -> Section:
    title = "Predicted against true (test)"
    pairs = [(_float(r.get("label")), _float(r.get("prediction"))) for r in run.predictions]
    pairs = [(t, p) for t, p in pairs if math.isfinite(t) and math.isfinite(p)]
    if not pairs:
        return "scatter", title, note("predictions.csv has no scored test rows")
    true, predicted = zip(*pairs)
    return "scatter", title, _plots.scatter_plot(true, predicted)


def _float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _generations_section(run: RunFiles) -> Section:
    """The first test prompts: reference, the base model's reply (profile.json) and the trained one's
    (predictions.csv, same test order)."""
    samples = run.profile.get("generations") or []
    after = {r.get("where"): r.get("prediction", "") for r in run.predictions}
    if samples:
        rows = [(s["prompt"], s["reference"], s["before"], after.get(s["where"], "–")) for s in samples]
    else:
        rows = [(r.get("text", ""), r.get("label", ""), "–", r.get("prediction", "")) for r in run.predictions[:8]]
    lead = "" if samples else note("the base model's replies were not kept (generation.compare_base off, or resumed)")
    return "generations", "Sample generations before and after training (test)", lead + table(
        ["prompt", "reference", "before training", "after training"], rows)


def _misclassified_section(run: RunFiles) -> Section:
    found = run.misclassified or {}
    images = found.get("images")
    title = "Misclassified test images"
    if images is None or not len(images):
        return "misclassified", title, note("no test image was misclassified")
    titles = [f"{t} → {p}" for t, p in zip(found["true"], found["predicted"])]
    total = sum(1 for r in run.predictions if r.get("label") != r.get("prediction")) or len(images)
    lead = note(f"{len(images)} of {total} misclassified test images (true → predicted)")
    return "misclassified", title, lead + _plots.image_grid(images, titles)
