"""benchmarks/serve_latency.py stays runnable: its pieces import, the train command's overrides validate on the
demo config, its export flags are options of `tunelab export`, and its timing and table helpers work."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import load_benchmark



@pytest.fixture(scope="module")
def bench():
    return load_benchmark("serve_latency")


def test_train_command_validates(bench, tmp_path: Path) -> None:
    from tunelab.catalog import load_config
    from tunelab.configs import DEMO_CONFIG

    command = bench.train_command(tmp_path / "run", 60, 1, 64)
    assert command[1:4] == ["-m", "tunelab", "train"] and "--demo" in command
    overrides = [command[i + 1] for i, part in enumerate(command) if part == "--set"]
    config = load_config(DEMO_CONFIG, overrides)
    assert config.data.limit == 60 and config.train.epochs == 1 and config.data.max_length == 64


def test_export_flags_are_cli_options(bench, tmp_path: Path) -> None:
    import typer.main

    from tunelab.cli import app

    options = {opt for param in typer.main.get_command(app).commands["export"].params for opt in param.opts}
    for flags in bench.BACKENDS.values():
        command = bench.export_command(tmp_path / "run", tmp_path / "out", flags or [])
        assert command[3] == "export" and {p for p in command if p.startswith("--")} <= options


def test_timing_and_table(bench) -> None:
    p50, p95 = bench.latency_ms(lambda: None, requests=20, warmup=1)
    assert 0 <= p50 <= p95
    row = {"p50_ms": 1.0, "p95_ms": 2.0, "examples_per_s": 100.0, "accuracy": 0.9, "macro_f1": 0.8}
    text = bench.table({"pytorch": row, "onnx-int8": {**row, "examples_per_s": 200.0}})
    assert "| onnx-int8 | 1.0 | 2.0 | 200.0 | 0.9000 | 0.8000 | 2.00x |" in text
    assert bench.parse_args(["--run", "x", "--requests", "5"]).requests == 5
