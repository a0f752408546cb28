"""`tunelab serve` refuses what it cannot serve before binding a port: one error line, exit code 2."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from tunelab.cli import app

runner = CliRunner()


def serve(*args: str) -> str:
    result = runner.invoke(app, ["serve", *args])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and result.output.count("error:") == 1, result.output
    return " ".join(result.output.split())


def test_not_a_run_directory(tmp_path: Path) -> None:
    assert f"serve {tmp_path}: not a tunelab run or export directory" in serve(str(tmp_path))
    assert "give a RUN_DIR or one or more --adapter" in serve()
    assert "expected NAME=RUN_DIR" in serve("--adapter", "=x")


def test_an_image_run_is_refused(tmp_path: Path) -> None:
    (tmp_path / "model").mkdir()
    (tmp_path / "config.yaml").write_text(yaml.safe_dump({"task": "image_classification"}))
    assert "the server takes text inputs only" in serve("--adapter", f"digits={tmp_path}")


def test_missing_server_packages_name_the_install_command(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "uvicorn", None)
    assert 'needs uvicorn (not installed): pip install "uvicorn>=0.29"' in serve(str(tmp_path))
