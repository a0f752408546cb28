"""`tunelab pseudo-label`: the confident rows of unlabelled text, with the run's own prediction as their label,
in the run's columns (a file the same config trains on), and nothing written when no row is that sure."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.conftest import sentiment_rows, train_via_cli, write_csv
from tunelab.cli import app


@pytest.fixture(scope="module")
def run(tiny_bert: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("pseudo")
    config = {"model": str(tiny_bert), "data": {"train": str(write_csv(folder / "t.csv", sentiment_rows(120))),
                                                "max_length": 16},
              "optim": {"lr": 3e-3}, "train": {"epochs": 3, "batch_size": 8}, "forgetting": {"measure": False},
              "output": str(folder / "run")}
    train_via_cli(config, folder=folder)
    return folder / "run"


def test_confident_rows_become_training_rows(run: Path, tmp_path: Path) -> None:
    unlabelled = write_csv(tmp_path / "u.csv", [{"text": r["text"]} for r in sentiment_rows(60, seed=5)])
    predicted = CliRunner().invoke(app, ["predict", str(run), "--input", str(unlabelled)])
    every = [json.loads(line) for line in predicted.output.strip().splitlines()]
    by_text = {row["text"]: row for row in every}
    sure = sorted(max(row["probabilities"].values()) for row in every)
    middle = next(i for i in range(len(sure) // 2, len(sure)) if sure[i] > sure[i - 1])
    cut = (sure[middle - 1] + sure[middle]) / 2  # between two confidences: about half pass, whatever the model learnt
    out = tmp_path / "pseudo.csv"
    result = CliRunner().invoke(app, ["pseudo-label", str(run), "--input", str(unlabelled), "--min-confidence",
                                      str(cut), "--output", str(out)])
    assert result.exit_code == 0, result.output
    with out.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["text", "label", "confidence", "source"]
    assert len(rows) == sum(c >= cut for c in sure) < 60 and all(float(r["confidence"]) >= cut for r in rows)
    for row in rows:  # the label is the run's prediction, its confidence that prediction's probability
        assert row["label"] == by_text[row["text"]]["prediction"]
        assert float(row["confidence"]) == pytest.approx(max(by_text[row["text"]]["probabilities"].values()), abs=1e-6)
    assert f"wrote {len(rows)} of 60 rows" in " ".join(result.output.split())
    from tunelab.config.schema import DataConfig
    from tunelab.tasks.registry import get_task

    assert len(get_task("classification").read(out, DataConfig(train=str(out)))) == len(rows)  # trains as it is


def test_nothing_is_written_when_no_row_is_that_sure(run: Path, tmp_path: Path) -> None:
    unlabelled = write_csv(tmp_path / "u.csv", [{"text": r["text"]} for r in sentiment_rows(10, seed=6)])
    out = tmp_path / "pseudo.jsonl"
    out.write_text("earlier\n", encoding="utf-8")
    result = CliRunner().invoke(app, ["pseudo-label", str(run), "--input", str(unlabelled), "--min-confidence", "1.0",
                                      "--output", str(out)])
    assert result.exit_code != 0 and "no row of 10 is predicted with probability >= 1.0" in " ".join(result.output.split())
    assert out.read_text(encoding="utf-8") == "earlier\n"
    bad = CliRunner().invoke(app, ["pseudo-label", str(run), "--input", str(unlabelled), "--min-confidence", "1.5",
                                   "--output", str(out)])
    assert bad.exit_code != 0 and "give a probability in (0, 1]" in bad.output


def test_balance_keeps_as_many_of_each_class_as_of_the_rarest(run: Path, tmp_path: Path) -> None:
    from tunelab.serving.pseudo_label import pseudo_label

    unlabelled = write_csv(tmp_path / "u.csv", [{"text": r["text"]} for r in sentiment_rows(60, seed=7)])
    every = pseudo_label(run, unlabelled, tmp_path / "all.csv", 1e-9)
    balanced = pseudo_label(run, unlabelled, tmp_path / "balanced.csv", 1e-9, balance=True)
    assert every.kept == 60 and len(every.per_label) == 2
    fewest = min(every.per_label.values())
    assert balanced.per_label == {name: fewest for name in every.per_label}
    with (tmp_path / "all.csv").open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    for name in every.per_label:  # the most confident of each class are the ones kept
        mine = sorted((float(r["confidence"]) for r in rows if r["label"] == name), reverse=True)
        with (tmp_path / "balanced.csv").open(newline="", encoding="utf-8") as handle:
            kept = sorted((float(r["confidence"]) for r in csv.DictReader(handle) if r["label"] == name), reverse=True)
        assert kept == mine[:fewest]
