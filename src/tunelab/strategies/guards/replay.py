"""Replay (rehearsal; Robins, 1995; Rolnick et al., 2019): every step also trains on a few examples drawn from
reference data, so the weights keep serving what they served before. The reference is, in order of use:
`guard.runs`, earlier tunelab runs whose training data is replayed through each run's own head (a task
sequence: `tunelab continual` fills it in); `guard.data`, a labelled file with this run's label set; for a
causal LM without either, general text with the LM loss (the forgetting meter's packaged reference text).

A step on a batch of B examples adds k = max(1, round(ratio * B)) replayed examples, whose mean loss counts
k / B against the batch's: the loss is that of one batch of B + k examples, times (B + k) / B. The examples
are drawn by a generator seeded from the run's seed and the batch's own example indices, so a resumed run
draws exactly what the uninterrupted one did."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal, Optional

from pydantic import Field

from tunelab.strategies.guards.base import Guard, GuardSection

if TYPE_CHECKING:
    from tunelab.models.task_model import TaskModel
    from tunelab.strategies.plan import Plan

__all__ = ["ReplaySection", "ReplayGuard"]


class ReplaySection(GuardSection):
    name: Literal["replay"] = "replay"
    strength: float = Field(1.0, gt=0.0, description="Factor on the replayed examples' share of the loss (1: "
                                                     "they count as examples of the batch).")
    # measured on MiniLM's BBC News -> SMS -> TREC sequence (benchmarks/README.md): 0.1 cut forgetting by 92% with
    # the last task equal to naive; 0.25 by 95%, the last task 1.25 points lower
    ratio: float = Field(0.1, gt=0.0, le=1.0, description="Replayed examples per batch example (0.1: 2 per 16).")
    runs: list[str] = Field(default_factory=list, description="Earlier run directories: their training data is "
                                                              "replayed through each run's own head.")
    data: Optional[str] = Field(None, description="A labelled file with this run's columns and labels to replay "
                                                  "(without runs); a causal LM without either replays general text.")
    examples: int = Field(2000, ge=1, description="At most this many reference examples per source are kept.")


class ReplayGuard(Guard):
    name = "replay"
    Section = ReplaySection

    def attach(self, plan: Plan, model: TaskModel, section: GuardSection) -> Plan:
        """A loss term whose sources (data, heads, losses) the caller sets before the first step: they need
        the prepared data and the earlier runs, which the strategies layer does not see."""
        from tunelab.strategies.guards.replay_loss import ReplayTerm
        from tunelab.strategies.plan import LossTerm

        assert isinstance(section, ReplaySection)
        plan.loss_terms.append(LossTerm(name="guard:replay", compute=ReplayTerm(section.ratio), weight=section.strength))
        return plan
