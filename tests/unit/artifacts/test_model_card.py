"""Every run's model/README.md: Hugging Face front matter that yaml parses, and "how to load it" snippets that
run (the transformers one of a native-head run, the peft one of a LoRA run, tunelab's for both)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from tests.conftest import train_via_cli
from tunelab.artifacts.model_card import base_card_metadata, write_model_card


def _card(run_dir: Path) -> tuple[dict, str]:
    text = (run_dir / "model" / "README.md").read_text(encoding="utf-8")
    assert text.startswith("---\n")
    _, front, body = text.split("---\n", 2)
    return yaml.safe_load(front), body


def _run_snippets(body: str, run_dir: Path, capsys: pytest.CaptureFixture) -> list[str]:
    blocks = re.findall(r"```python\n(.*?)```", body, flags=re.S)
    assert blocks
    printed = []
    for code in blocks:
        exec(compile(code.replace("RUN_DIR", str(run_dir)), "model-card", "exec"), {})
        printed.append(capsys.readouterr().out)
    return printed


def test_native_run_card_parses_and_its_transformers_snippet_runs(tiny_config: dict, tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture) -> None:
    tiny_config["train"]["epochs"] = 1
    train_via_cli(tiny_config, folder=tmp_path)
    run = Path(tiny_config["output"])
    front, body = _card(run)
    assert front["library_name"] == "transformers" and front["license"] == "unknown"
    assert front["base_model"] == tiny_config["model"] and "tunelab" in front["tags"]
    metrics = {m["type"]: m["value"] for m in front["model-index"][0]["results"][0]["metrics"]}
    assert "accuracy" in metrics and "macro_f1" in metrics
    for section in ("## How it was trained", "## Evaluation", "## Intended use and limitations", "## How to load it"):
        assert section in body
    assert "truncated to 16 tokens" in body and "Per class" in body
    printed = _run_snippets(body, run, capsys)
    assert "With transformers" in body and "tensor" in printed[0] and "'prediction'" in printed[1]


def test_mlm_run_card_says_how_to_use_the_backbone_and_its_snippets_run(tiny_config: dict, tmp_path: Path,
                                                                         capsys: pytest.CaptureFixture) -> None:
    tiny_config.update(task="mlm")
    tiny_config["train"]["epochs"] = 1
    train_via_cli(tiny_config, folder=tmp_path)
    run = Path(tiny_config["output"])
    front, body = _card(run)
    assert front["model-index"][0]["results"][0]["task"]["type"] == "fill-mask"
    assert "`model: RUN_DIR/model` in its config" in body
    printed = _run_snippets(body, run, capsys)
    assert printed[0].strip() and "'prediction'" in printed[1]  # a token for the mask; tunelab's perplexity per text


def test_license_and_languages_come_from_the_base_card(tmp_path: Path) -> None:
    (tmp_path / "README.md").write_text("---\nlicense: apache-2.0\nlanguage: [en, fr]\n---\n# base\n", encoding="utf-8")
    assert base_card_metadata(tmp_path) == {"license": "apache-2.0", "language": ["en", "fr"]}
    (tmp_path / "README.md").unlink()
    (tmp_path / "config.json").write_text('{"license": "mit"}', encoding="utf-8")
    assert base_card_metadata(tmp_path) == {"license": "mit"}


def test_lora_run_card_has_a_peft_snippet_that_runs(adapter_run, capsys: pytest.CaptureFixture) -> None:
    run = adapter_run({"name": "lora", "lora": {"rank": 4}})
    write_model_card(run, {"train": 72, "validation": 24, "test": 24})
    front, body = _card(run)
    assert front["library_name"] == "peft" and front["license"] == "unknown" and "lora" in front["tags"]
    assert "PeftModel.from_pretrained" in body and "With transformers" not in body
    printed = _run_snippets(body, run, capsys)
    assert "tensor" in printed[0]


def test_linear_head_run_card_snippet_gives_tunelabs_probabilities(tiny_config: dict, tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture) -> None:
    """A linear head over the normalised mean (what `head: auto` gives feature extraction on a sentence
    encoder) loads with transformers + safetensors: the snippet prints the probabilities tunelab computes."""
    import torch

    from tunelab.serving.predictor import load_predictor

    tiny_config["train"]["epochs"] = 1
    tiny_config["head"] = {"type": "linear", "pooling": "mean", "normalize": True}
    train_via_cli(tiny_config, folder=tmp_path)
    run = Path(tiny_config["output"])
    _, body = _card(run)
    assert "With transformers and safetensors" in body
    code = re.findall(r"```python\n(.*?)```", body, flags=re.S)[0]
    scope: dict = {}
    exec(compile(code.replace("RUN_DIR", str(run)), "model-card", "exec"), scope)
    capsys.readouterr()
    predictor = load_predictor(run)
    encoded = predictor.tokenizer(["an example text"], truncation=True, max_length=16, return_tensors="pt")
    with torch.no_grad():
        expected = predictor.model(encoded["input_ids"], encoded["attention_mask"])
    assert torch.allclose(scope["logits"], expected, atol=1e-5)
