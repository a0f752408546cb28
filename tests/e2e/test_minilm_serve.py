"""`tunelab serve` on the built-in MiniLM (a short demo run: 300 BBC News articles, one epoch) under the full
load: 2,000 requests from 64 concurrent clients, 10% malformed; a client killed mid-request; SIGTERM with
requests in flight (tests/serve_harness.py). Latency and throughput are printed (run with -s), not asserted."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.serve_harness import check_server
from tunelab.cli import app

pytestmark = pytest.mark.e2e


def test_minilm_serve_under_load(tmp_path: Path) -> None:
    pytest.importorskip("uvicorn")
    run_dir = tmp_path / "demo"
    result = CliRunner().invoke(app, ["train", "--demo", "--out", str(run_dir), "--set", "data.limit=300",
                                      "--set", "train.epochs=1", "--set", "train.precision=fp32"])
    assert result.exit_code == 0, result.output
    # at SIGTERM: 8 requests of 16 texts, with time to finish them on a slow or busy CPU
    check_server(run_dir, tmp_path / "serve.log", requests=800, clients=64, in_flight=(8, 16),
                 server_args=("--graceful-timeout", "300"))
