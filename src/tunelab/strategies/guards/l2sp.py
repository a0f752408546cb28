"""L2-SP (Li, Grandvalet and Davoine, 2018): strength * ||theta - theta0||^2 over the pre-trained parameters
that train, the starting point as the reference instead of zero. The head is new and trains free."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from tunelab.strategies.guards.base import Guard, GuardSection

__all__ = ["L2SPSection", "L2SPGuard"]


class L2SPSection(GuardSection):
    name: Literal["l2sp"] = "l2sp"
    strength: float = Field(0.01, gt=0.0, description="alpha of L2-SP: the penalty is strength * ||theta - theta0||^2.")


class L2SPGuard(Guard):
    name = "l2sp"
    Section = L2SPSection
