"""Turn user errors into one message and exit code 2; keep tracebacks for `--debug` and real bugs."""

from __future__ import annotations

import functools
import sys
from typing import Any, Callable, TypeVar

from rich.console import Console

from tunelab.errors import TunelabError

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
            err_console.print(f"[bold red]error:[/] {err}", highlight=False, markup=True, soft_wrap=True)
            sys.exit(2)
        except KeyboardInterrupt:
            err_console.print("interrupted")
            sys.exit(130)
    return wrapper  # type: ignore[return-value]
