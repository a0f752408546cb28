"""Distillation's run-time side: the teacher checked against the prepared data, its logits for the training split
(computed once and cached: serving/teacher_logits.py) given to the plan's term, and what it cost, for the
manifest. The term itself is on the Plan (strategies/distill.py); this module has what needs the prepared data
and the teacher run, which the strategies layer does not see."""

from __future__ import annotations

from typing import Any, Optional

from rich.console import Console

from tunelab.config.schema import RunConfig
from tunelab.serving.teacher_logits import check_teacher, teacher_logits
from tunelab.strategies.distill import distill_term
from tunelab.strategies.plan import Plan
from tunelab.strategies.registry import distill_section
from tunelab.training.callbacks.progress import print_phrases

__all__ = ["check_distillation", "prepare_distillation", "distillation_report"]


def check_distillation(config: RunConfig, label_names: Optional[list[str]] = None) -> None:
    """Before anything is written: the teacher is a finished run of this task (and of these labels, once the
    data is read). Raises a ConfigError naming what differs."""
    section = distill_section(config.strategy)
    if section is not None:
        check_teacher(section.teacher, config.task, label_names)


def prepare_distillation(prepared: Any, config: RunConfig, plan: Plan, console: Console) -> Optional[dict[str, Any]]:
    """Give the plan's term the teacher's logits of this run's training split (rank 0 computes a missing entry,
    the other ranks read it after); the report so far, or None without distillation."""
    term, section = distill_term(plan), distill_section(config.strategy)
    if term is None or section is None:
        return None
    records, dist = prepared.encoded["train"].records, prepared.dist
    task = prepared.task
    got = teacher_logits(section.teacher, records, task.name, prepared.label_names) if dist.is_main else None
    dist.barrier()
    if got is None:
        got = teacher_logits(section.teacher, records, task.name, prepared.label_names)
    term.set_teacher(got.logits, task.soft_targets)
    done = f"computed in {got.seconds:.1f} s" if got.computed else f"read from the cache in {got.seconds:.1f} s"
    print_phrases(console, [f"distillation: {len(records)} teacher logits", done, f"(teacher {section.teacher},",
                            f"T {section.temperature:g}, alpha {section.alpha:g})"], sep=" ")
    return {"teacher": section.teacher, "temperature": section.temperature, "alpha": section.alpha,
            "teacher_logits": {"computed": got.computed, "reused": got.reused, "seconds": round(got.seconds, 2),
                               "key": got.key, "file": str(got.file)}}


def distillation_report(report: Optional[dict[str, Any]], plan: Plan) -> Optional[dict[str, Any]]:
    """The report with the term's own cost (time in the soft-target loss, forward side) and its last value."""
    term = distill_term(plan)
    if report is None or term is None:
        return report
    last = None if term.last is None else round(float(term.last), 6)
    return {**report, "distill_s": round(term.seconds, 3), "distill_calls": term.calls, "last_distill_loss": last}
