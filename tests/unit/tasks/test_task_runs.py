"""Every task with every head kind, through the CLI on the tiny model: the saved run predicts exactly
what the trained model predicted on the test split (save -> load round trip)."""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

import pytest

from tests.conftest import train_via_cli
from tunelab.serving.predict import predict_rows


def multilabel_rows(n: int) -> list[dict]:
    rng = random.Random(1)
    rows = []
    for i in range(n):
        labels = [name for name, word in (("pos", "good"), ("neg", "bad")) if rng.random() < 0.5] or ["pos"]
        words = ["the", "movie", "was"] + [("good" if l == "pos" else "bad") for l in labels]
        rng.shuffle(words)
        rows.append({"text": " ".join(words), "labels": labels})
    return rows


def regression_rows(n: int) -> list[dict]:
    rng = random.Random(2)
    rows = []
    for _ in range(n):
        k = rng.randint(0, 3)
        rows.append({"text": " ".join(["good"] * k + ["the", "film"]), "score": float(k)})
    return rows


CASES = {
    "multilabel-native": ("multilabel", {"type": "native"}, multilabel_rows, "labels", "micro_f1"),
    "regression-mlp-mean": ("regression", {"type": "mlp", "pooling": "mean", "hidden_size": 16}, regression_rows, "score", "mse"),
    "classification-linear-cls": ("classification", {"type": "linear", "pooling": "cls"}, None, "label", "macro_f1"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_task_and_head_round_trip(case: str, tiny_bert: Path, sentiment_csv: Path, tmp_path: Path) -> None:
    task, head, make_rows, label_column, metric = CASES[case]
    if make_rows is None:
        train = sentiment_csv
    else:
        train = tmp_path / "train.jsonl"
        train.write_text("".join(json.dumps(r) + "\n" for r in make_rows(80)), encoding="utf-8")
    raw = {"model": str(tiny_bert), "task": task, "head": head,
           "data": {"train": str(train), "label_column": label_column, "max_length": 16},
           "optim": {"lr": 3e-3}, "train": {"epochs": 2, "batch_size": 8}, "early_stopping": {"metric": metric},
           "output": str(tmp_path / "run")}
    train_via_cli(raw, folder=tmp_path)
    run = tmp_path / "run"
    metrics = json.loads((run / "test_metrics.json").read_text())
    assert metric in metrics
    saved = list(csv.DictReader((run / "predictions.csv").open(encoding="utf-8")))
    again = predict_rows(run, texts=[r["text"] for r in saved])
    for row, new in zip(saved, again):
        if task == "regression":
            assert float(row["prediction"]) == pytest.approx(new["prediction"], abs=1e-4)
        else:
            for name, value in new["probabilities"].items():
                assert float(row[f"prob_{name}"]) == pytest.approx(value, abs=1e-5)
    if head["type"] != "native":
        assert (run / "model" / "tunelab_head.safetensors").is_file()
