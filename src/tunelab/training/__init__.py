"""The trainer loop, steps, schedules and callbacks."""

from tunelab.training.trainer import EvalResult, FitResult, Trainer

__all__ = ["Trainer", "FitResult", "EvalResult"]
