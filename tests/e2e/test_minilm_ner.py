"""End to end on the real MiniLM and a subset of the hironsancorpus Japanese NER data: the shipped
config trains through the CLI, writes word-level predictions and entity scores, and beats the
majority-tag baseline."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from tests.conftest import REPO, train_via_cli

pytestmark = pytest.mark.e2e


def test_ner_config_on_a_subset(tmp_path: Path) -> None:
    out = tmp_path / "ner"
    train_via_cli(REPO / "configs" / "ner-hironsan.yaml", "--out", str(out), "--set", "data.limit=150",
                  "--set", "train.epochs=3", "--set", "data.max_length=96", "--set", "optim.lr=3e-4")
    for name in ("config.yaml", "manifest.json", "metrics.jsonl", "test_metrics.json", "predictions.csv", "profile.json",
                 "report.html", "model/config.json"):
        assert (out / name).is_file(), name
    metrics = json.loads((out / "test_metrics.json").read_text())
    assert metrics["baseline_entity_f1"] == 0.0 and metrics["majority_tag"] == "O"
    assert metrics["entity_f1"] > metrics["baseline_entity_f1"]
    rows = list(csv.DictReader((out / "predictions.csv").open(encoding="utf-8")))
    assert all(len(r["prediction"].split()) == len(r["label"].split()) for r in rows)
