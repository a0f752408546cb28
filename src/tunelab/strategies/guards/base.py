"""What every forgetting guard shares: its config section (`strategy.guard: {name: ..., ...}`, declared with the
guard), the choice of parameters it holds, and how it joins a Plan, whatever the strategy (full, partial,
gradual, PEFT).

A guard is a loss term on the Plan (`Plan.loss_terms`, added to the task loss by `train_step`) that pulls the
pre-trained weights back towards where training started: the embeddings and the LayerStack blocks, never the
head, which is new. Importing this module (and a guard's file) imports no torch: validation reads every
guard's section; the penalty (`penalty.py`) and the Fisher (`fisher.py`) are imported when a Plan is built.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, Optional

from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:
    from tunelab.models.task_model import TaskModel
    from tunelab.strategies.guards.penalty import AnchorPenalty
    from tunelab.strategies.guards.replay_loss import ReplayTerm
    from tunelab.strategies.plan import Plan

__all__ = ["GuardSection", "Guard", "held_parameters", "guard_penalty", "replay_term"]


class GuardSection(BaseModel):
    """A guard's section, `strategy.guard`; `name` picks the guard."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    name: str
    strength: float = Field(gt=0.0, description="Weight of the penalty against the task loss.")


class Guard:
    """A forgetting guard. Subclasses set the class facts; `weight` turns the section into the loss term's
    factor on sum_i w_i (theta_i - theta0_i)^2 (w_i = 1 for L2-SP, the Fisher for EWC)."""

    name: ClassVar[str]
    Section: ClassVar[type[GuardSection]]
    needs_fisher: ClassVar[bool] = False

    def weight(self, section: GuardSection) -> float:
        return section.strength

    def attach(self, plan: Plan, model: TaskModel, section: GuardSection) -> Plan:
        """Add this guard's penalty to `plan` (anchored at the model's weights now, which are the pre-trained
        ones: strategies only insert modules that start at zero change)."""
        from tunelab.strategies.guards.penalty import AnchorPenalty
        from tunelab.strategies.plan import LossTerm

        direct, deltas = held_parameters(model, plan)
        penalty = AnchorPenalty(self.name, model, direct, deltas, needs_fisher=self.needs_fisher)
        plan.loss_terms.append(LossTerm(name=f"guard:{self.name}", compute=penalty, weight=self.weight(section)))
        return plan


def held_parameters(model: TaskModel, plan: Plan) -> tuple[list[str], dict[str, str]]:
    """What a guard holds: the pre-trained parameters (embeddings and blocks) that train at any time, by name,
    and the inserted layers whose update is a weight delta (LoRA's `delta_weight`), by path -> the name of the
    base weight it changes. Frozen blocks (partial's, the activation cache's) and the head are left out."""
    from tunelab.strategies.peft.base import adaptation_of

    stack = model.layer_stack
    adaptation = adaptation_of(model)
    inserted = adaptation.layers if adaptation is not None else {}
    inserted_params = {f"{path}.{n}" for path, layer in inserted.items() for n in layer.declared_names()}
    direct = [n for n, _ in model.named_parameters() if n in plan.ever_trainable and n not in inserted_params
              and stack.group_of(n) != stack.head_group]
    deltas = {path: f"{path}.base_layer.weight" for path, layer in inserted.items()
              if hasattr(layer, "delta_weight") and stack.group_of(path + ".") != stack.head_group}
    return direct, deltas


def guard_penalty(plan: Plan) -> Optional[AnchorPenalty]:
    """The guard's penalty on `plan`, if it carries one."""
    from tunelab.strategies.guards.penalty import AnchorPenalty

    return next((t.compute for t in plan.loss_terms if isinstance(t.compute, AnchorPenalty)), None)


def replay_term(plan: Plan) -> Optional[ReplayTerm]:
    """The replay guard's term on `plan`, if it carries one."""
    from tunelab.strategies.guards.replay_loss import ReplayTerm

    return next((t.compute for t in plan.loss_terms if isinstance(t.compute, ReplayTerm)), None)
