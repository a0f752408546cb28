"""The one error type a user can cause.

Everything a user can get wrong (a config key, a data file, a model directory) raises a subclass of
:class:`TunelabError`. The CLI catches exactly this type, prints its message and exits with code 2;
anything else is a bug in tunelab and keeps its traceback.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

__all__ = ["TunelabError", "ConfigError", "DataError", "ModelError", "TrainingError", "RunInterrupted", "Problems",
           "bullet_lines", "check_all"]


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


class Problems(TunelabError):
    """Several independent user errors found in one pass (output folder, data, model), reported together so a
    user fixes them all before the next try; `errors` keeps each one."""

    def __init__(self, errors: Sequence[TunelabError]) -> None:
        super().__init__(f"{len(errors)} problems:\n" + bullet_lines([str(e) for e in errors]))
        self.errors = list(errors)


def bullet_lines(lines: Sequence[str]) -> str:
    """`  - line` per line, continuation lines indented under their bullet: the one layout of a multi-problem
    message (config problems and run problems alike)."""
    return "\n".join("  - " + line.replace("\n", "\n    ") for line in lines)


# what check_all collects: the errors a user causes with their files; anything else (a bug, an interrupt,
# a training failure) propagates at once
_USER_ERRORS = (ConfigError, DataError, ModelError)


def check_all(checks: Sequence[Callable[[], Any]]) -> list[Any]:
    """Run every check even when an earlier one fails, and return their results in order. One failure is
    re-raised as it is (its message unchanged); several become one `Problems` listing them all."""
    results: list[Any] = []
    failures: list[TunelabError] = []
    for check in checks:
        try:
            results.append(check())
        except _USER_ERRORS as err:
            failures.append(err)
            results.append(None)
    if len(failures) == 1:
        raise failures[0]
    if failures:
        raise Problems(failures)
    return results
