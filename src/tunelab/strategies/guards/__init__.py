"""Forgetting guards (EWC, L2-SP, replay): loss terms and callbacks a Plan carries (`Plan.loss_terms`,
`Plan.callbacks`), one guard per file, listed once in GUARDS. Not the NaN/Inf step checks, which are the
trainer's (training/bad_steps.py). Importing this package imports no torch."""

from __future__ import annotations

from tunelab.strategies.guards.base import Guard, GuardSection, guard_penalty, held_parameters, replay_term
from tunelab.strategies.guards.ewc import EWCGuard
from tunelab.strategies.guards.l2sp import L2SPGuard
from tunelab.strategies.guards.replay import ReplayGuard

__all__ = ["GUARDS", "Guard", "GuardSection", "guard_penalty", "replay_term", "held_parameters", "PLANNED"]

GUARDS: dict[str, Guard] = {"l2sp": L2SPGuard(), "ewc": EWCGuard(), "replay": ReplayGuard()}
PLANNED: dict[str, str] = {}  # guard names a config may meet before the guard exists: name -> what to say

