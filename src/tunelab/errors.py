"""The one error type a user can cause.

Everything a user can get wrong (a config key, a data file, a model directory) raises a subclass of
:class:`TunelabError`. The CLI catches exactly this type, prints its message and exits with code 2;
anything else is a bug in tunelab and keeps its traceback.
"""

from __future__ import annotations

__all__ = ["TunelabError", "ConfigError", "DataError", "ModelError", "TrainingError", "RunInterrupted"]


class TunelabError(Exception):
    """A problem the user can fix; the message says where it is and what to do."""

    exit_code = 2


class ConfigError(TunelabError):
    """A run configuration is invalid; the message names every bad key path."""


class DataError(TunelabError):
    """A data file is missing, unreadable or malformed; the message names the file and row."""


class ModelError(TunelabError):
    """A model directory or checkpoint cannot be loaded as asked."""


class TrainingError(TunelabError):
    """Training cannot go on (e.g. repeated NaN/Inf losses); the message names the step and likely causes."""


class RunInterrupted(TunelabError):
    """SIGINT/SIGTERM stopped the run after a checkpoint; the message says how to resume. Exit 128 + signal."""

    def __init__(self, message: str, signum: int = 2) -> None:
        super().__init__(message)
        self.signum = signum
        self.exit_code = 128 + signum
