"""End to end on the real MiniLM and subsets of the CoNLL-2003 English and hironsancorpus Japanese NER data:
the shipped configs train through the CLI, write word-level predictions and entity scores, and beat the
majority-tag baseline; the Japanese run records its [UNK] share (MiniLM's vocabulary is English), the English
one none."""

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
    assert json.loads((out / "manifest.json").read_text())["unknown_token_rate"]["train"] > 0.15


def test_english_ner_config_on_a_subset(tmp_path: Path) -> None:
    out = tmp_path / "ner-en"
    train_via_cli(REPO / "configs" / "ner-conll2003.yaml", "--out", str(out), "--set", "data.limit=300",
                  "--set", "train.epochs=2", "--set", "data.max_length=64", "--set", "optim.lr=3e-4",
                  "--set", "forgetting.measure=false", "--set", "report=false")  # both drawn by the run above
    metrics = json.loads((out / "test_metrics.json").read_text())
    assert set(metrics["per_type"]) == {"LOC", "MISC", "ORG", "PER"}, metrics
    assert metrics["entity_f1"] > metrics["baseline_entity_f1"] == 0.0
    assert json.loads((out / "manifest.json").read_text())["unknown_token_rate"] == {"train": 0.0, "validation": 0.0,
                                                                                     "test": 0.0}
