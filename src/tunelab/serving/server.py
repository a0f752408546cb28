"""`tunelab serve`: the app on uvicorn, with a graceful shutdown.

On SIGTERM (or Ctrl-C) the listener closes at once (a new client gets "connection refused" and tries another
instance) and uvicorn waits for the requests in flight (at most `graceful_timeout_s`); from the signal on, the
app answers any further request on an open connection with 503, so no request is cut half-way and none starts
late. Then the batcher stops.

uvicorn alone closes the listener only at its next 0.1 s tick and then drops every connection that has not
sent a request yet. A client that connected in that window had its request reset unanswered (httpx
`ReadError`), so a connection accepted before the listener closed gets `_LATE_REQUEST_GRACE_S` to send its
request and receive its 503.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from pathlib import Path
from types import FrameType
from typing import Any, Optional

import uvicorn

from tunelab.errors import TunelabError
from tunelab.serving.app import ServeSettings, create_app
from tunelab.serving.backend import check_servable, load_models

__all__ = ["serve"]

_LATE_REQUEST_GRACE_S = 0.5


class _DrainingServer(uvicorn.Server):
    """uvicorn's server, which also tells the app to refuse new work the moment a signal arrives."""

    def __init__(self, config: uvicorn.Config, state: Any) -> None:
        super().__init__(config)
        self.tunelab_state = state

    async def startup(self, sockets: Optional[list] = None) -> None:
        self._loop = asyncio.get_running_loop()
        await super().startup(sockets)

    def handle_exit(self, sig: int, frame: Optional[FrameType]) -> None:
        self.tunelab_state.draining = True
        super().handle_exit(sig, frame)
        loop = getattr(self, "_loop", None)
        if loop is not None and loop.is_running():  # a signal handler may not touch the loop: schedule it
            loop.call_soon_threadsafe(self._stop_listening)

    def _stop_listening(self) -> None:
        for listener in getattr(self, "servers", []):
            if listener.is_serving():
                for connection in _accept_pending(listener):  # closing would reset them unanswered
                    self._loop.create_task(self._loop.connect_accepted_socket(listener._protocol_factory, connection))
                listener.close()

    async def shutdown(self, sockets: Optional[list] = None) -> None:
        self._stop_listening()
        if any(_awaits_request(c) for c in self.server_state.connections):
            await asyncio.sleep(_LATE_REQUEST_GRACE_S)
        await super().shutdown(sockets)


def _accept_pending(listener: asyncio.base_events.Server) -> list[socket.socket]:
    """The connections the kernel completed that the loop has not accepted yet (uses asyncio's private
    `_sockets` and `_protocol_factory`; without them nothing is taken and the pending few are reset, as before)."""
    if not hasattr(listener, "_protocol_factory"):
        return []
    taken = []
    for sock in getattr(listener, "_sockets", None) or []:
        while True:
            try:
                connection, _ = sock.accept()
            except OSError:  # BlockingIOError: none left
                break
            connection.setblocking(False)
            taken.append(connection)
    return taken


def _awaits_request(connection: Any) -> bool:
    """A connection uvicorn's shutdown would close unanswered: accepted, but its request not read yet."""
    return getattr(connection, "cycle", None) is None


def serve(run_dir: Optional[Path], adapters: dict[str, Path], settings: ServeSettings, *, host: str = "127.0.0.1",
          port: int = 8000, graceful_timeout_s: float = 30.0, threads: Optional[int] = None,
          log_level: str = "info") -> None:
    """Check the runs (fast, before binding), then serve until a signal. A model that fails to load stops the
    server and is raised here as a TunelabError."""
    if run_dir is None and not adapters:
        raise TunelabError("serve: give a RUN_DIR or one or more --adapter NAME=RUN_DIR")
    if run_dir is not None:
        check_servable(run_dir, f"serve {run_dir}")
    for name, path in adapters.items():
        check_servable(path, f"--adapter {name}={path}")
    failure: list[BaseException] = []
    holder: dict[str, _DrainingServer] = {}

    def load_failed(err: BaseException) -> None:
        failure.append(err)
        holder["server"].should_exit = True

    app = create_app(lambda: load_models(run_dir, adapters, threads=threads), settings, on_load_error=load_failed)
    config = uvicorn.Config(app, host=host, port=port, log_level=log_level, access_log=False, lifespan="on",
                            timeout_graceful_shutdown=graceful_timeout_s)
    ours = logging.getLogger("tunelab.serve")  # uvicorn configured its own loggers: ours writes the same way
    ours.setLevel(log_level.upper())
    ours.handlers, ours.propagate = list(logging.getLogger("uvicorn").handlers), False
    holder["server"] = server = _DrainingServer(config, app.state.tunelab)
    server.run()
    if failure:
        err = failure[0]
        raise err if isinstance(err, TunelabError) else TunelabError(f"serve: loading the model failed: {err}")
    if not server.started:
        raise TunelabError(f"serve: could not start on {host}:{port} (is the port in use?); pick another with --port")
