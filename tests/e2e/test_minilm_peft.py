"""End to end: LoRA on the real MiniLM with a few hundred BBC News articles; the parameter count, the
adapter size, peft loading the run, and the merged export."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from tunelab.cli import app

pytestmark = pytest.mark.e2e
runner = CliRunner()

HIDDEN, BLOCKS = 384, 6
HEAD = HIDDEN * HIDDEN + HIDDEN + HIDDEN * 5 + 5
LORA = BLOCKS * 2 * 8 * (HIDDEN + HIDDEN)          # r * (in + out) on query and value of every block


def test_lora_on_minilm(tmp_path: Path) -> None:
    out = tmp_path / "lora"
    result = runner.invoke(app, ["train", "--demo", "--out", str(out), "--set", "strategy.name=lora",
                                 "--set", "strategy.freeze_blocks=null", "--set", "data.limit=150",
                                 "--set", "data.max_length=64", "--set", "train.epochs=1"])
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["trainable_params"] == LORA + HEAD
    assert manifest["trainable_params"] < 0.01 * manifest["total_params"]
    weights = load_file(str(out / "model" / "adapter_model.safetensors"))
    adapter_bytes = sum(t.numel() * t.element_size() for k, t in weights.items() if "lora_" in k)
    assert adapter_bytes < 1_000_000
    assert not (out / "model" / "model.safetensors").exists()

    peft = pytest.importorskip("peft")
    from transformers import AutoModelForSequenceClassification

    from tunelab.artifacts.model_io import load_run

    run = load_run(out)
    ids = torch.tensor([[101, 2023, 2003, 1037, 3231, 102]])
    mask = torch.ones_like(ids)
    with torch.no_grad():
        ours = run.model.eval()(ids, mask)
        base = AutoModelForSequenceClassification.from_pretrained(manifest["base_model"], num_labels=5)
        theirs = peft.PeftModel.from_pretrained(base, out / "model").eval()(input_ids=ids, attention_mask=mask).logits
    torch.testing.assert_close(theirs, ours, atol=1e-5, rtol=1e-5)

    merged = tmp_path / "merged"
    result = runner.invoke(app, ["export", str(out), "--merge", "--out", str(merged)])
    assert result.exit_code == 0, result.output
    plain = AutoModelForSequenceClassification.from_pretrained(merged).eval()
    with torch.no_grad():
        torch.testing.assert_close(plain(input_ids=ids, attention_mask=mask).logits, ours, atol=1e-4, rtol=1e-4)
