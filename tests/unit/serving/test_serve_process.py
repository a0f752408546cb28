"""A real `tunelab serve` process on the tiny model (loopback, a free port): 400 requests from 16 concurrent
clients with 10% malformed ones, every answer as expected and every prediction the one `tunelab predict`
gives; a client killed mid-request; SIGTERM with requests in flight. The full-size version (2,000 requests,
64 clients, MiniLM) is tests/e2e/test_minilm_serve.py."""

from __future__ import annotations

import json
import signal
import socket
import time
from pathlib import Path

import pytest

from tests.conftest import train_via_cli
from tests.serve_harness import check_server, load_bench

pytest.importorskip("uvicorn")


def test_serve_under_load_with_faults_and_sigterm(tiny_config: dict, tmp_path: Path) -> None:
    tiny_config["train"]["precision"] = "fp32"
    train_via_cli(tiny_config, folder=tmp_path)
    # one torch thread: the tiny model gains nothing from more, and a CPU shared with other work loses a lot
    check_server(Path(tiny_config["output"]), tmp_path / "serve.log", requests=400, clients=16,
                 server_args=("--threads", "1"))


def test_connections_open_at_sigterm_are_answered_not_reset(tiny_config: dict, tmp_path: Path) -> None:
    """Clients that connected just before the signal and send their request after it (a busy client, or one
    whose connect raced the signal) get a 503 they can act on, not a reset; new connections are refused."""
    tiny_config["train"]["precision"] = "fp32"
    train_via_cli(tiny_config, folder=tmp_path)
    server = load_bench().ServerProcess(Path(tiny_config["output"]), "--threads", "1", log=tmp_path / "s.log").start()
    try:
        opened = [socket.create_connection(("127.0.0.1", server.port), timeout=10) for _ in range(8)]
        time.sleep(0.2)  # accepted by the server: they wait for a request
        server.terminate()
        time.sleep(0.25)  # past uvicorn's 0.1 s shutdown tick, inside the grace
        body = json.dumps({"inputs": ["a fine film"]}).encode()
        request = (b"POST /v1/predict HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
                   b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        answers = []
        for sock in opened:
            with sock:
                sock.sendall(request)
                answers.append(sock.recv(64).split(b" ")[1:2])
        assert answers == [[b"503"]] * len(opened), answers
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", server.port), timeout=5)
        assert server.process.wait(60) in (0, -signal.SIGTERM), server.log.read_text()
    finally:
        server.stop()
