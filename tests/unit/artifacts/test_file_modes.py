"""Every file of a run directory has the mode a plain `open` gives (0o666 & ~umask), so another user or a
serving container under another uid can read the model: safetensors' save_file (and so save_pretrained)
writes 0600 unless the writer fixes it (issue 13, "Files and terminal")."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from tests.conftest import train_via_cli


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


@pytest.mark.parametrize("strategy", ["full", "lora"])
def test_every_run_file_gets_the_umask_mode(tiny_config: dict, tmp_path: Path, strategy: str) -> None:
    config = {**tiny_config, "task": "text-classification", "strategy": {"name": strategy},
              "train": {**tiny_config["train"], "epochs": 1}}
    train_via_cli(config, folder=tmp_path)
    run = Path(config["output"])
    files = [p for p in run.rglob("*") if p.is_file()]
    assert any(p.name.endswith(".safetensors") for p in files) and any("checkpoints" in p.parts for p in files)
    wanted = 0o666 & ~_umask()
    modes = {str(p.relative_to(run)): oct(p.stat().st_mode & 0o777) for p in files}
    assert {name: mode for name, mode in modes.items() if mode != oct(wanted)} == {}
    saved = yaml.safe_load((run / "config.yaml").read_text(encoding="utf-8"))
    assert saved["task"] == "classification"   # the alias given, tunelab's name saved
