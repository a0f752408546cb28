"""Elastic weight consolidation (Kirkpatrick et al., 2017): strength / 2 * sum_i F_i (theta_i - theta*_i)^2,
F the diagonal of the Fisher information, estimated once from per-example squared gradients of a task loss:
with `guard.runs` (earlier runs of a task sequence, `tunelab continual`), each earlier run's Fisher on its own
model, training data and head, summed (online EWC, Schwarz et al., 2018; theta* is where this run starts,
the last of them); else at theta* on `guard.data` (a labelled file read like data.train, with this run's label
set), or on the run's own training examples as a stand-in for a previous task. The Fisher is stored with the
run (`guards/fisher.safetensors`), so a resumed run reads it back instead of estimating it again."""

from __future__ import annotations

from typing import Literal, Optional

from pydantic import Field

from tunelab.strategies.guards.base import Guard, GuardSection

__all__ = ["EWCSection", "EWCGuard"]


class EWCSection(GuardSection):
    name: Literal["ewc"] = "ewc"
    # measured on MiniLM's BBC News -> SMS -> TREC sequence (benchmarks/README.md): 1e3 left forgetting as it was,
    # 1e4 cut it by 10%, 1e5 by 69% with the last task 1.25 points above naive, 1e6 stopped the last task learning
    strength: float = Field(1.0e5, gt=0.0, description="lambda of EWC: the penalty is strength/2 * sum F (theta - theta*)^2.")
    fisher_examples: int = Field(256, ge=1, description="Examples the Fisher is estimated from (one backward pass each).")
    data: Optional[str] = Field(None, description="Labelled reference file for the Fisher (this run's columns and "
                                                  "labels); default: the run's training split, as a stand-in.")
    runs: list[str] = Field(default_factory=list, description="Earlier run directories whose Fishers (each on its "
                                                              "own model, data and head) are summed; before data.")


class EWCGuard(Guard):
    name = "ewc"
    Section = EWCSection
    needs_fisher = True

    def weight(self, section: GuardSection) -> float:
        return section.strength / 2.0
