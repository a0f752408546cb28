"""Pickle weights refused unless --trust-pickle (then weights_only); remote code never implied; safe output paths."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file
from typer.testing import CliRunner

from tunelab.cli import app
from tunelab.training.checkpoint import CheckpointStore

runner = CliRunner()
MARKER = "tunelab-pwned.txt"


class Payload:
    """Unpickling this runs code: what a hostile .bin file does."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "code ran"))


def pickle_model(tiny_bert: Path, tmp_path: Path, state: object) -> Path:
    model = tmp_path / "pickled"
    shutil.copytree(tiny_bert, model, ignore=shutil.ignore_patterns("*.safetensors"))
    torch.save(state, model / "pytorch_model.bin")
    return model


def run(tmp_path: Path, tiny_config: dict, model: Path, *flags: str):
    tiny_config["model"] = str(model)
    tiny_config["train"]["epochs"] = 1
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(tiny_config), encoding="utf-8")
    return runner.invoke(app, ["train", str(path), *flags])


def test_pickle_weights_need_trust_and_then_load_weights_only(tiny_bert: Path, tiny_config: dict, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TUNELAB_CACHE", str(tmp_path / "cache"))
    model = pickle_model(tiny_bert, tmp_path, load_file(str(tiny_bert / "model.safetensors")))
    refused = run(tmp_path, tiny_config, model)
    assert refused.exit_code == 2 and "--trust-pickle" in refused.output
    trusted = run(tmp_path, tiny_config, model, "--trust-pickle")
    assert trusted.exit_code == 0, trusted.output
    converted = list((tmp_path / "cache" / "pickle-converted").glob("*/model.safetensors"))
    assert len(converted) == 1 and not list(converted[0].parent.glob("*.bin"))


def test_hostile_pickle_is_refused_even_with_trust(tiny_bert: Path, tiny_config: dict, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TUNELAB_CACHE", str(tmp_path / "cache"))
    marker = tmp_path / MARKER
    model = pickle_model(tiny_bert, tmp_path, {"weight": Payload(marker)})
    result = run(tmp_path, tiny_config, model, "--trust-pickle")
    assert result.exit_code == 2 and "refused even with --trust-pickle" in " ".join(result.output.split())
    assert not marker.exists()


def test_remote_code_is_never_run_implicitly(tiny_bert: Path, tiny_config: dict, tmp_path: Path) -> None:
    model = tmp_path / "remote"
    shutil.copytree(tiny_bert, model)
    marker = tmp_path / MARKER
    (model / "custom.py").write_text(f"open({str(marker)!r}, 'w').write('code ran')\n"
                                     "from transformers import BertModel as Model, BertConfig as Config\n")
    config = json.loads((model / "config.json").read_text())
    config["auto_map"] = {"AutoConfig": "custom.Config", "AutoModel": "custom.Model",
                          "AutoModelForSequenceClassification": "custom.Model"}
    (model / "config.json").write_text(json.dumps(config))
    result = run(tmp_path, tiny_config, model)
    assert result.exit_code in (0, 2), result.output
    assert not marker.exists()


def test_overwrite_never_deletes_the_folder_holding_the_current_directory(tiny_config: dict, tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    work = tmp_path / "project" / "work"
    work.mkdir(parents=True)
    monkeypatch.chdir(work)
    tiny_config["output"] = ".."
    result = run(tmp_path, tiny_config, Path(tiny_config["model"]), "--overwrite")
    assert result.exit_code == 2 and "contains the current directory" in " ".join(result.output.split())
    assert work.is_dir()


def test_checkpoint_names_from_manifests_cannot_leave_the_folder(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path / "checkpoints", keep=2)
    with pytest.raises(Exception) as err:
        store.load("../../etc")
    assert "not a checkpoint name" in str(err.value)
