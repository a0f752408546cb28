"""`tunelab continual` on the tiny model: two tasks with different label sets, the matrix R per strategy and
its summaries, chained steps that start from the previous run's backbone with a head of their own, guards that
hold the earlier runs (EWC's Fishers, replay through the earlier heads), an adapter per task that forgets
nothing and serves every task from one base, and the sequence file validated like a config."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from tests.conftest import FILLER, sentiment_rows, write_csv
from tunelab.cli import app
from tunelab.errors import ConfigError
from tunelab.evaluation.continual import average_forgetting, backward_transfer, sequence_summary

runner = CliRunner()
TOPICS = {"screen": ["movie", "film"], "story": ["plot", "story"], "cast": ["acting", "really"]}


def topic_rows(n: int, seed: int = 1) -> list[dict[str, str]]:
    """A second task on the same vocabulary with three other labels: which pair of words the text holds."""
    rng = random.Random(seed)
    rest = [w for w in FILLER if all(w not in pair for pair in TOPICS.values())]
    rows = []
    for i in range(n):
        label = list(TOPICS)[i % 3]
        words = rng.sample(rest, 3) + TOPICS[label]
        rng.shuffle(words)
        rows.append({"text": " ".join(words), "label": label})
    return rows


def sequence_file(tmp_path: Path, tiny_bert: Path, strategies: list[str], **extra: object) -> Path:
    first = write_csv(tmp_path / "sentiment.csv", sentiment_rows(160))
    second = write_csv(tmp_path / "topics.csv", topic_rows(160))
    data = {"max_length": 16, "validation_split": 0.2, "test_split": 0.25}
    spec = {"model": str(tiny_bert), "tasks": [{"name": "sentiment", "data": {"train": first.name, **data}},
                                               {"name": "topics", "data": {"train": second.name, **data}}],
            "strategies": strategies, "guards": {"ewc": {"strength": 100.0, "fisher_examples": 16},
                                                 "replay": {"ratio": 0.5}},
            "run": {"optim": {"lr": 3e-3}, "train": {"epochs": 3, "batch_size": 8, "precision": "fp32"}},
            "output": str(tmp_path / "seq"), **extra}
    path = tmp_path / "sequence.yaml"
    path.write_text(yaml.safe_dump(spec), encoding="utf-8")
    return path


def test_gem_summaries_by_hand() -> None:
    r = [[0.9, 0.6, 0.5], [None, 0.8, 0.7], [None, None, 0.75]]
    assert backward_transfer(r) == pytest.approx(((0.5 - 0.9) + (0.7 - 0.8)) / 2)
    assert average_forgetting(r) == pytest.approx(((0.9 - 0.5) + (0.8 - 0.7)) / 2)
    summary = sequence_summary(r)
    assert summary["average_accuracy"] == pytest.approx((0.5 + 0.7 + 0.75) / 3) and summary["last_task"] == 0.75
    assert average_forgetting([[0.5, 0.9, 0.6], [None, 0.7, 0.7], [None, None, 0.8]]) == pytest.approx((0.3 + 0.0) / 2)


def test_a_sequence_per_strategy(tiny_bert: Path, tmp_path: Path) -> None:
    path = sequence_file(tmp_path, tiny_bert, ["full", "full+ewc", "full+replay", "lora-per-task"])
    result = runner.invoke(app, ["continual", str(path)])
    assert result.exit_code == 0, result.output
    out = tmp_path / "seq"
    data = json.loads((out / "continual.json").read_text())
    assert data["tasks"] == ["sentiment", "topics"] and data["metric"] == "accuracy"
    rows = {row["spec"]: row for row in data["strategies"]}
    for row in rows.values():
        r = row["R"]
        assert r[1][0] is None and all(0.0 <= v <= 1.0 for v in (r[0][0], r[0][1], r[1][1]))
        assert row["summary"]["average_accuracy"] == pytest.approx((r[0][1] + r[1][1]) / 2)
    steps = {spec: [s for s in row["steps"]] for spec, row in rows.items()}
    # the guarded strategies' first task is the very same run as the unguarded one's, trained once
    assert steps["full+ewc"][0]["shared_with"] == steps["full+replay"][0]["shared_with"] == steps["full"][0]["run_dir"]
    second = out / steps["full"][1]["run_dir"]
    config = yaml.safe_load((second / "config.yaml").read_text())
    assert config["model"]["init_from"] == str(out / steps["full"][0]["run_dir"])
    ewc = steps["full+ewc"][1]["guard"]
    assert ewc["name"] == "ewc" and "earlier run" in ewc["fisher"] and ewc["fisher_s"] > 0
    replay = steps["full+replay"][1]["guard"]
    first_train = json.loads((out / steps["full"][0]["run_dir"] / "profile.json").read_text())["splits"]["train"]
    assert replay["name"] == "replay" and list(replay["sources"].values()) == [first_train["examples"]]
    assert replay["replayed_examples"] > 0 and replay["replay_s"] > 0
    lora = rows["lora-per-task"]
    assert lora["R"][0][1] == lora["R"][0][0] and lora["summary"]["average_forgetting"] == 0.0
    assert yaml.safe_load((out / lora["steps"][1]["run_dir"] / "config.yaml").read_text())["model"].get("init_from") is None
    page = (out / "report.html").read_text()
    assert all(f'id="{name}"' in page for name in ("summary", "matrices", "curves", "steps")) and "<svg" in page
    assert "forgetting" in result.output and "R[task][after step]" in result.output


def test_adapters_of_a_sequence_serve_every_task_from_one_base(tiny_bert: Path, tmp_path: Path) -> None:
    path = sequence_file(tmp_path, tiny_bert, ["lora-per-task"],
                         settings={"lora-per-task": {"strategy.lora.lr": 5e-3, "train.epochs": 2}})
    assert runner.invoke(app, ["continual", str(path)]).exit_code == 0
    out = tmp_path / "seq"
    runs = [out / s["run_dir"] for s in json.loads((out / "continual.json").read_text())["strategies"][0]["steps"]]
    for run in runs:  # the strategy's own settings win over run:
        config = yaml.safe_load((run / "config.yaml").read_text())
        assert config["strategy"]["lora"]["lr"] == 5e-3 and config["train"]["epochs"] == 2
    predictions = tmp_path / "p.jsonl"
    result = runner.invoke(app, ["predict", "--adapter", f"sentiment={runs[0]}", "--adapter", f"topics={runs[1]}",
                                 "--text", "the movie was good", "--output", str(predictions)])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in predictions.read_text().splitlines()]
    assert {r["adapter"] for r in rows} == {"sentiment", "topics"}
    labels = {r["adapter"]: set(r["probabilities"]) for r in rows}
    assert labels == {"sentiment": {"pos", "neg"}, "topics": set(TOPICS)}


def test_sequence_file_problems_are_reported_together(tmp_path: Path) -> None:
    from tunelab.config.sequence import load_sequence

    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"tasks": [{"name": "a", "data": {}}, {"name": "a", "data": {}}],
                                    "strategies": ["full+", "lora-per-task+ewc"], "run": {"data": {}}}))
    with pytest.raises(ConfigError) as err:
        load_sequence(path)
    text = str(err.value)
    assert "full+" in text and "nothing earlier to guard" in text
    path.write_text(yaml.safe_dump({"tasks": [{"name": "a", "data": {}}, {"name": "a", "data": {}}],
                                    "run": {"data": {}}}))
    with pytest.raises(ConfigError, match="names must differ"):
        load_sequence(path)
    path.write_text(yaml.safe_dump({"tasks": [{"name": "a", "data": {}}, {"name": "b", "data": {}}],
                                    "strategies": ["full"], "settings": {"lora": {"optim.lr": 1e-3}}}))
    with pytest.raises(ConfigError, match="settings: lora is not in strategies"):
        load_sequence(path)


def test_init_from_refuses_an_adapter_strategy_and_another_backbone(tiny_config: dict, tmp_path: Path) -> None:
    from tunelab.catalog import parse_config

    with pytest.raises(ConfigError, match="model.init_from: strategy lora"):
        parse_config({**tiny_config, "model": {"name": tiny_config["model"], "init_from": "x"},
                      "strategy": {"name": "lora"}})
