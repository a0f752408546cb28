"""Turn user errors into one message and exit code 2; keep tracebacks for `--debug` and real bugs."""

from __future__ import annotations

import functools
import sys
from typing import Any, Callable, TypeVar

from rich.console import Console
from rich.markup import escape

from tunelab.errors import RunInterrupted, TunelabError

__all__ = ["user_errors", "DEBUG", "err_console"]

err_console = Console(stderr=True)
DEBUG = {"on": False}
F = TypeVar("F", bound=Callable[..., Any])


def user_errors(func: F) -> F:
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except TunelabError as err:
            if DEBUG["on"]:
                raise
            label = "stopped" if isinstance(err, RunInterrupted) else "[bold red]error:[/]"
            err_console.print(f"{label} {escape(str(err))}", highlight=False, markup=True, soft_wrap=True)
            sys.exit(err.exit_code)
        except KeyboardInterrupt:
            err_console.print("interrupted")
            sys.exit(130)
    return wrapper  # type: ignore[return-value]
