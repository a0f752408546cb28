"""A real `tunelab serve` process on the tiny model (loopback, a free port): 400 requests from 16 concurrent
clients with 10% malformed ones, every answer as expected and every prediction the one `tunelab predict`
gives; a client killed mid-request; SIGTERM with requests in flight. The full-size version (2,000 requests,
64 clients, MiniLM) is tests/e2e/test_minilm_serve.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import train_via_cli
from tests.serve_harness import check_server

pytest.importorskip("uvicorn")


def test_serve_under_load_with_faults_and_sigterm(tiny_config: dict, tmp_path: Path) -> None:
    tiny_config["train"]["precision"] = "fp32"
    train_via_cli(tiny_config, folder=tmp_path)
    # one torch thread: the tiny model gains nothing from more, and a CPU shared with other work loses a lot
    check_server(Path(tiny_config["output"]), tmp_path / "serve.log", requests=400, clients=16,
                 server_args=("--threads", "1"))
