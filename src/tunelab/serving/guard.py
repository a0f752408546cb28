"""The ASGI layer in front of every route: metrics for every request, refusals that must happen before a body
is read (413 for a body over the limit, 503 while the server drains for shutdown), and JSON bodies read as JSON
whatever Content-Type says (`curl -d` sends form-encoded), so a body that is not JSON gets the same clear 422.

A plain ASGI middleware (not Starlette's BaseHTTPMiddleware): it adds no task per request and leaves a
client's disconnect to the server.
"""

from __future__ import annotations

import json
import time
from typing import Any, Awaitable, Callable

__all__ = ["Guard", "error_body"]

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


def error_body(message: str, error_type: str) -> dict[str, str]:
    """The one shape of every error answer (as Hugging Face text-embeddings-inference writes them)."""
    return {"error": message, "error_type": error_type}


class Guard:
    """`state` needs `.draining` (bool), `.settings.max_body_bytes` and `.metrics` (ServerMetrics)."""

    def __init__(self, app: Callable[..., Awaitable[None]], state: Any) -> None:
        self.app, self.state = app, state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started, status = time.perf_counter(), [500]

        async def send_status(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self._guarded(scope, receive, send_status)
        finally:
            self.state.metrics.observe_request(scope["path"], status[0], time.perf_counter() - started)

    async def _guarded(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.state.draining and scope["path"] not in ("/metrics", "/health"):  # /health says "draining"
            await _answer(send, 503, error_body("the server is shutting down; retry on another instance",
                                                "unavailable"), close=True)
            return
        limit = self.state.settings.max_body_bytes
        headers = dict(scope["headers"])
        length = headers.get(b"content-length")
        if scope["method"] == "POST" and not headers.get(b"content-type", b"").startswith(b"application/json"):
            scope = {**scope, "headers": [(k, v) for k, v in scope["headers"] if k != b"content-type"]
                     + [(b"content-type", b"application/json")]}
        if length is None and scope["method"] in ("POST", "PUT", "PATCH"):  # chunked: read it here, bounded
            body = await _read_body(receive, limit)
            if body is None:
                await _answer(send, 413, self._too_large(), close=True)
                return
            receive = _replay(body, receive)
        elif length is not None and (not length.isdigit() or int(length) > limit):
            await _answer(send, 413, self._too_large(), close=True)
            return
        await self.app(scope, receive, send)

    def _too_large(self) -> dict[str, str]:
        return error_body(f"the request body is over {self.state.settings.max_body_bytes} bytes; send fewer or "
                          "shorter texts per request", "too_large")


async def _read_body(receive: Receive, limit: int) -> bytes | None:
    """The whole body, or None as soon as it passes `limit` bytes."""
    chunks, size, more = [], 0, True
    while more:
        message = await receive()
        if message["type"] != "http.request":  # the client went away
            return b""
        chunks.append(message.get("body", b""))
        size += len(chunks[-1])
        if size > limit:
            return None
        more = message.get("more_body", False)
    return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """The body read already, as one message; then the client's own messages (its disconnect)."""
    sent = [False]

    async def replayed() -> Message:
        if sent[0]:
            return await receive()
        sent[0] = True
        return {"type": "http.request", "body": body, "more_body": False}
    return replayed


async def _answer(send: Send, status: int, body: dict[str, str], close: bool = False) -> None:
    payload = json.dumps(body).encode("utf-8")
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})
