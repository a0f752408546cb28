"""Knowledge distillation (Hinton, Vinyals and Dean, 2015), a section every strategy may carry:
`strategy.distill: {teacher: RUN_DIR, temperature: T, alpha: a}`.

The student (any backbone, any strategy: full, partial, LoRA, ...) learns from the teacher run's logits as well
as from the labels: the loss of a step is

    a * T^2 * KL(softmax(teacher / T) || softmax(student / T)) + (1 - a) * the task's own loss,

so class weights and focal loss still shape the label part (multilabel: the KL of each class's Bernoulli, mean
over the decisions). T^2 keeps the soft part's gradients at the size of the hard part's as T grows. The teacher's
logits are computed once per (teacher run, training texts) and cached under the cache root
(serving/teacher_logits.py); each batch picks its rows by its examples' indices (`Batch.indices`).

Like a guard, distillation is a term on the Plan (`Plan.output_terms`, computed from the step's own logits) plus
the task loss's factor (`Plan.task_loss_weight`): the trainer stays the one loop. Importing this module imports
no torch (validation reads the section); the term is in `distill_loss.py`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional

from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:
    from tunelab.strategies.distill_loss import DistillTerm
    from tunelab.strategies.plan import Plan

__all__ = ["DISTILL_KEY", "DistillSection", "attach_distillation", "distill_term", "check_distill_shape"]

DISTILL_KEY = "distill"  # strategy.distill


class DistillSection(BaseModel):
    """`strategy.distill`: which run teaches, how soft its targets are, and how much they count."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    teacher: str = Field(description="A finished run directory (tunelab train) of the same task and label set: its "
                                     "model predicts the training texts once, through its own tokenizer.")
    temperature: float = Field(2.0, gt=0.0, le=100.0, description="T: logits are divided by T before the softmax; "
                                                                  "above 1 the teacher's targets soften.")
    alpha: float = Field(0.5, ge=0.0, le=1.0, description="Weight of the teacher's soft targets (times T^2); the "
                                                          "labels' loss weighs 1 - alpha (0: labels only, 1: teacher only).")


def check_distill_shape(raw: Any) -> list[str]:
    """The section must be a mapping; its fields are the schema's (resolve_sections reports those)."""
    if isinstance(raw, (DistillSection, dict)):
        return []
    return [f"strategy.{DISTILL_KEY}: expected a mapping such as {{teacher: runs/teacher, temperature: 2.0, alpha: 0.5}}, "
            f"got {raw!r}"]


def attach_distillation(plan: Plan, section: DistillSection) -> Plan:
    """The soft-target term on `plan` and the labels' weight 1 - alpha. The teacher's logits are set by the caller
    before the first step (orchestration/distilling.py): they need the prepared data and the teacher run."""
    from tunelab.strategies.distill_loss import DistillTerm
    from tunelab.strategies.plan import OutputTerm

    plan.output_terms.append(OutputTerm(name="distill", compute=DistillTerm(section.temperature), weight=section.alpha))
    plan.task_loss_weight = 1.0 - section.alpha
    return plan


def distill_term(plan: Plan) -> Optional[DistillTerm]:
    """The distillation term on `plan`, if it carries one."""
    from tunelab.strategies.distill_loss import DistillTerm

    return next((t.compute for t in plan.output_terms if isinstance(t.compute, DistillTerm)), None)
