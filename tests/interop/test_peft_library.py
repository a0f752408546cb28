"""Our LoRA / IA3 / prompt-tuning files, loaded by the real `peft` library, give tunelab's logits."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tunelab.artifacts.model_io import load_run

peft = pytest.importorskip("peft")

VARIANTS = {
    "lora": {"name": "lora", "lora": {"rank": 4, "alpha": 8}},
    "lora-rslora": {"name": "lora", "lora": {"rank": 4, "alpha": 8, "rslora": True, "target_modules": ["query", "key", "dense"]}},
    "lora-dora": {"name": "lora", "lora": {"rank": 4, "alpha": 8, "dora": True}},
    "ia3": {"name": "ia3"},
    "prompt": {"name": "prompt_tuning", "prompt": {"num_tokens": 4}},
}


INPUT = torch.tensor([[2, 5, 9, 12, 7, 3, 0, 0], [2, 6, 10, 3, 0, 0, 0, 0]])
MASK = (INPUT != 0).long()


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_peft_loads_our_adapter_with_the_head(variant: str, tiny_bert: Path, adapter_run) -> None:
    from transformers import AutoModelForSequenceClassification

    run_dir = adapter_run(VARIANTS[variant])
    ours = load_run(run_dir).model.eval()
    with torch.no_grad():
        expected = ours(INPUT, MASK)
    base = AutoModelForSequenceClassification.from_pretrained(tiny_bert, num_labels=2)
    theirs = peft.PeftModel.from_pretrained(base, run_dir / "model").eval()
    with torch.no_grad():
        got = theirs(input_ids=INPUT, attention_mask=MASK).logits
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    # the head came from the file, not from a fresh initialisation
    fresh = AutoModelForSequenceClassification.from_pretrained(tiny_bert, num_labels=2)
    classifier = theirs.base_model.model.classifier if variant != "prompt" else theirs.base_model.classifier
    assert not torch.allclose(classifier.modules_to_save["default"].weight, fresh.classifier.weight)
