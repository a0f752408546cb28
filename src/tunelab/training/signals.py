"""SIGINT/SIGTERM during training: finish the current step, checkpoint, exit with how to resume.

The handler only sets a flag; the trainer reads it at the next optimizer-step boundary, where the state is
consistent and a checkpoint can be written. A second SIGINT gives up waiting (KeyboardInterrupt): the last
checkpoint on disk is still intact because checkpoints are written atomically.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import Any, Iterator, Optional

__all__ = ["StopRequest", "graceful_stop"]


class StopRequest:
    """Truthy once a stop signal has arrived; `signum` says which."""

    def __init__(self) -> None:
        self.signum: Optional[int] = None

    def __bool__(self) -> bool:
        return self.signum is not None

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name if self.signum else ""


@contextlib.contextmanager
def graceful_stop(on_request: Any = None) -> Iterator[StopRequest]:
    """Within the block, SIGINT and SIGTERM set the returned flag instead of killing the process.

    Outside the main thread signals cannot be caught; the flag then simply never rises."""
    request = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield request
        return

    def handle(signum: int, frame: Any) -> None:
        if request and signum == signal.SIGINT:
            raise KeyboardInterrupt  # second Ctrl-C: stop waiting for the step to finish
        request.signum = signum
        if on_request is not None:
            on_request(request)

    previous = {sig: signal.signal(sig, handle) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield request
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
