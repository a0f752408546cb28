"""Our LoRA / IA3 / prompt-tuning files, loaded by the real `peft` library, give tunelab's logits."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tunelab.artifacts.model_io import load_run, save_task_model
from tunelab.config.loading import parse_config
from tunelab.strategies import compile_strategy
from tunelab.strategies.peft.base import adaptation_of

peft = pytest.importorskip("peft")

VARIANTS = {
    "lora": {"name": "lora", "lora": {"rank": 4, "alpha": 8}},
    "lora-rslora": {"name": "lora", "lora": {"rank": 4, "alpha": 8, "rslora": True, "target_modules": ["query", "key", "dense"]}},
    "lora-dora": {"name": "lora", "lora": {"rank": 4, "alpha": 8, "dora": True}},
}


def trained_run(tmp_path: Path, tiny_bert: Path, sentiment_csv: Path, strategy: dict, build_tiny) -> Path:
    """A run directory holding a saved adapter whose every declared parameter is non-trivial."""
    from transformers import AutoTokenizer

    config = parse_config({"model": str(tiny_bert), "data": {"train": str(sentiment_csv)}, "strategy": strategy})
    model = build_tiny()
    plan = compile_strategy(config.strategy, model, config.optim, 1)
    torch.manual_seed(1)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name in plan.trainable:
                param.add_(0.1 * torch.randn_like(param))
    run_dir = tmp_path / "run"
    (run_dir).mkdir()
    from tunelab.config.loading import config_to_yaml

    (run_dir / "config.yaml").write_text(config_to_yaml(config))
    (run_dir / "labels.json").write_text('{"task": "classification", "labels": ["neg", "pos"]}')
    save_task_model(model, AutoTokenizer.from_pretrained(tiny_bert), run_dir / "model", config)
    assert adaptation_of(model) is not None
    return run_dir


INPUT = torch.tensor([[2, 5, 9, 12, 7, 3, 0, 0], [2, 6, 10, 3, 0, 0, 0, 0]])
MASK = (INPUT != 0).long()


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_peft_loads_our_adapter_with_the_head(variant: str, tmp_path: Path, tiny_bert: Path, sentiment_csv: Path, build_tiny) -> None:
    from transformers import AutoModelForSequenceClassification

    run_dir = trained_run(tmp_path, tiny_bert, sentiment_csv, VARIANTS[variant], build_tiny)
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
    assert not torch.allclose(theirs.base_model.model.classifier.modules_to_save["default"].weight, fresh.classifier.weight)
