"""`tunelab serve`: the app on uvicorn, with a graceful shutdown.

On SIGTERM (or Ctrl-C) uvicorn stops accepting connections and waits for the requests in flight (at most
`graceful_timeout_s`); from the signal on, the app answers any further request on a kept-alive connection
with 503, so no request is cut half-way and none starts late. Then the batcher stops.
"""

from __future__ import annotations

import logging
from pathlib import Path
from types import FrameType
from typing import Any, Optional

import uvicorn

from tunelab.errors import TunelabError
from tunelab.serving.app import ServeSettings, create_app
from tunelab.serving.backend import check_servable, load_models

__all__ = ["serve"]


class _DrainingServer(uvicorn.Server):
    """uvicorn's server, which also tells the app to refuse new work the moment a signal arrives."""

    def __init__(self, config: uvicorn.Config, state: Any) -> None:
        super().__init__(config)
        self.tunelab_state = state

    def handle_exit(self, sig: int, frame: Optional[FrameType]) -> None:
        self.tunelab_state.draining = True
        super().handle_exit(sig, frame)


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
