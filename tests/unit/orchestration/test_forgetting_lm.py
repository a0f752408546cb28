"""The forgetting meter on a decoder LM: perplexity on the reference text before / after, greedy agreement on
the fixed prompts, per-block drift and CKA, on a tiny Llama (the packaged text replaced by a small one)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.unit.tasks.test_instruction import config_for, make_tiny_llama, qa_rows, write_jsonl
from tunelab.orchestration import forgetting_lm


def test_lm_retention_section(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tunelab.orchestration.train import train as run_training

    text = " ".join(["what colour is the sky blue what colour is the grass green say hello there"] * 40)
    monkeypatch.setattr(forgetting_lm, "reference_text", lambda: (text, "a test text"))
    monkeypatch.setattr(forgetting_lm, "CHUNK_TOKENS", 16)
    model = make_tiny_llama(tmp_path / "llama")
    data = write_jsonl(tmp_path / "d.jsonl", qa_rows(30))
    summary = run_training(config_for(model, data, tmp_path / "run", train={"epochs": 2, "batch_size": 4, "seed": 0}))
    section = json.loads((summary.run_dir / "test_metrics.json").read_text())["forgetting"]
    assert len(section["weight_drift"]) == len(section["cka"]) == 2
    perplexity = section["retention"]["perplexity"]
    assert perplexity["text"] == "a test text" and perplexity["tokens"] > 0
    assert perplexity["before"] > 1 and perplexity["after"] > 1 and perplexity["before"] != perplexity["after"]
    agreement = section["retention"]["greedy_agreement"]
    assert agreement["prompts"] == 8 and 0 <= agreement["after"] <= 1
    assert 0 <= section["retention"]["greedy_rouge_l"]["after"] <= 1


def test_reference_text_is_found_by_path_or_reported_missing() -> None:
    found = forgetting_lm.reference_text()
    assert found is None or ("Hamlet" in found[1] and "HAMLET" in found[0].upper() and "**" not in found[0])
