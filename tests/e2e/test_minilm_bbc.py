"""End to end on the real built-in MiniLM and a few hundred BBC News articles: the CLI, the files it
writes, the reload through transformers, and each strategy's trainable-parameter count."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from tunelab.cli import app

pytestmark = pytest.mark.e2e
runner = CliRunner()

HIDDEN, BLOCK = 384, 1_774_464  # MiniLM-L6: width, parameters per transformer block
POOLER, CLASSIFIER = HIDDEN * HIDDEN + HIDDEN, HIDDEN * 5 + 5
HEAD = POOLER + CLASSIFIER  # the native head: BERT pooler + 5-way classifier
TOTAL = 22_713_216 + CLASSIFIER
# feature extraction reads MiniLM as it was trained to be read (head: auto): a linear head over the normalised
# mean, no pooler
LINEAR_TOTAL = TOTAL - POOLER

# strategy overrides -> parameters trainable at the first step, and in all
STRATEGIES = {
    "full": ([], TOTAL, TOTAL),
    "head": ([], CLASSIFIER, LINEAR_TOTAL),
    "partial": (["strategy.freeze_blocks=4"], 2 * BLOCK + HEAD, TOTAL),
    "gradual": ([], HEAD, TOTAL),
}


def train(tmp_path: Path, strategy: str, extra: list[str]) -> tuple[Path, str]:
    out = tmp_path / strategy
    args = ["train", "--demo", "--out", str(out), "--set", f"strategy.name={strategy}", "--set", "data.limit=200",
            "--set", "data.max_length=64", "--set", "train.epochs=2", "--set", "train.batch_size=16"]
    if strategy != "partial":
        args += ["--set", "strategy.freeze_blocks=null"]
    for item in extra:
        args += ["--set", item]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    return out, result.output


@pytest.mark.parametrize("strategy", list(STRATEGIES))
def test_strategy_trains_and_counts(tmp_path: Path, strategy: str) -> None:
    extra, expected, total = STRATEGIES[strategy]
    out, output = train(tmp_path, strategy, extra)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["trainable_params"] == expected
    assert manifest["total_params"] == total
    assert f"{expected:,} of {total:,} parameters trainable" in output
    metrics = json.loads((out / "test_metrics.json").read_text())
    assert 0.0 <= metrics["accuracy"] <= 1.0 and len(metrics["confusion_matrix"]) == 5
    lines = [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines()]
    assert {l["kind"] for l in lines} == {"train", "validation"}
    if strategy == "gradual":
        assert "epoch 2: unfreeze block 5" in output
        assert manifest["history"][1]["events"] == ["unfreeze block 5"]


def test_reload_through_transformers_matches_tunelab_predict(tmp_path: Path) -> None:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    out, _ = train(tmp_path, "partial", ["strategy.freeze_blocks=4"])
    rows = list(csv.DictReader((out / "predictions.csv").open(encoding="utf-8")))[:8]
    texts = [r["text"] for r in rows]
    result = runner.invoke(app, ["predict", str(out)] + [a for t in texts for a in ("--text", t)])
    assert result.exit_code == 0, result.output
    ours = [json.loads(l) for l in result.stdout.strip().splitlines()]

    model = AutoModelForSequenceClassification.from_pretrained(out / "model").eval()
    tokenizer = AutoTokenizer.from_pretrained(out / "model")
    with torch.no_grad():
        enc = tokenizer(texts, truncation=True, max_length=64, padding=True, return_tensors="pt")
        probs = torch.softmax(model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).logits, -1)
    labels = json.loads((out / "labels.json").read_text())["labels"]
    assert [model.config.id2label[i] for i in range(5)] == labels
    for row, p in zip(ours, probs):
        assert row["prediction"] == labels[int(p.argmax())]
        assert [row["probabilities"][n] for n in labels] == pytest.approx(p.tolist(), abs=1e-4)
