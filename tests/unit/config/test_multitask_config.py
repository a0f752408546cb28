"""A multi-task config (`tasks:`): every problem reported at once with its key path (`tasks[1].data...`), what the
tasks share resolved (heads, mixing, the early-stopping metric), and saved forms: a single-task config's as before,
a multi-task config's without the per-task sections it does not use."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tunelab.catalog import load_config, parse_config
from tunelab.config.loading import config_to_yaml
from tunelab.errors import ConfigError


def two_tasks(**extra: object) -> dict:
    return {"model": "minilm",
            "tasks": [{"name": "news", "data": {"builtin": "bbc-news", "limit": 100}},
                      {"name": "questions", "data": {"builtin": "trec-questions"}, "head": {"type": "mlp"}}],
            **extra}


def problems(raw: dict) -> str:
    with pytest.raises(ConfigError) as err:
        parse_config(raw)
    return str(err.value)


def test_a_multi_task_config_resolves_what_the_tasks_share() -> None:
    config = parse_config(two_tasks())
    news, questions = config.tasks
    assert (news.task, news.head.type, questions.head.type) == ("classification", "linear", "mlp")  # auto: linear
    assert news.loss == config.loss and questions.loss is not None
    assert config.mixing.name == "proportional" and config.mixing.temperature == 2.0
    assert config.early_stopping.metric == "macro_f1"  # both tasks' default
    assert config.forgetting.measure is False
    single = config.task_config("questions")
    assert (single.task, single.data.builtin, single.head.type, single.tasks) == ("classification", "trec-questions",
                                                                                  "mlp", None)


def test_tasks_without_a_common_default_metric_stop_early_on_the_mean_loss() -> None:
    raw = two_tasks()
    raw["tasks"][1].update(task="regression", data={"train": "scores.csv", "label_column": "score"})
    assert parse_config(raw).early_stopping.metric == "loss"


def test_every_problem_is_reported_at_once_under_its_task() -> None:
    raw = two_tasks(thresholds={"tune": True}, strategy={"name": "full", "distill": {"teacher": "runs/t"}},
                    early_stopping={"metric": "mse"})
    raw["tasks"][1].update(task="regression", head={"type": "native"}, loss={"label_smoothing": 0.1},
                           data={"train": "x.csv", "sampler": "balanced"})
    raw["tasks"].append({"name": "ner", "task": "ner", "data": {"train": "tags.jsonl"}})
    raw["tasks"].append({"name": "images", "task": "image_classification", "data": {"train": "images"}})
    raw["tasks"].append({"name": "chat", "task": "instruction_tuning", "data": {"train": "chat.jsonl"}})
    text = problems(raw)
    for line in ("thresholds.tune: not with tasks:", "strategy.distill: not with tasks:",
                 "tasks[1].head.type: native", "tasks[1].loss.label_smoothing applies to tasks classification and preference",
                 "tasks[1].data.sampler: balanced draws by class",
                 "early_stopping.metric 'mse' is not computed for task classification",
                 "tasks[2].task: token_classification is not offered in a multi-task run",
                 "tasks[3].task: image_classification is not offered", "tasks[4].task: instruction_tuning is not"):
        assert line in text, text
    assert text.count("early_stopping.metric 'mse'") == 1  # a shared section's problem is said once


def test_schema_problems_name_the_task_by_its_place_in_the_list() -> None:
    raw = two_tasks()
    raw["tasks"][1]["data"]["lable_column"] = "x"
    assert "tasks[1].data.lable_column: unknown key (did you mean 'label_column'?)" in problems(raw)
    raw = two_tasks()
    raw["tasks"][0]["name"] = "a b"
    assert "tasks[0].name: String should match pattern" in problems(raw)


@pytest.mark.parametrize("change, expected", [
    ({"task": "classification"}, "task: a multi-task config gives each task its own under tasks[i]"),
    ({"data": {"builtin": "bbc-news"}}, "data: a multi-task config gives each task its own"),
    ({"tasks": []}, "tasks: List should have at least 1 item"),
])
def test_tasks_replace_task_and_data(change: dict, expected: str) -> None:
    assert expected in problems({**two_tasks(), **change})


def test_names_are_unique_and_mixing_needs_tasks() -> None:
    raw = two_tasks()
    raw["tasks"][1]["name"] = "news"
    assert "tasks: each task needs its own name; 'news' is given twice" in problems(raw)
    assert "mixing: applies to a multi-task run (tasks:)" in problems({"data": {"builtin": "bbc-news"},
                                                                       "mixing": {"name": "temperature"}})
    assert "data: required key is missing" in problems({"model": "minilm"})
    assert "mixing.temperature: Input should be greater than or equal to 1" in problems(
        two_tasks(mixing={"name": "temperature", "temperature": 0.5}))


def test_saved_forms(tmp_path: Path) -> None:
    """A single-task config saves as it always did; a multi-task one saves its tasks resolved, without the
    top-level sections each task has its own of, and reads back to the same config."""
    single = parse_config({"data": {"builtin": "bbc-news"}})
    assert not {"tasks", "mixing"} & set(yaml.safe_load(config_to_yaml(single)))
    config = parse_config(two_tasks(mixing={"name": "temperature", "temperature": 3.0}))
    saved = yaml.safe_load(config_to_yaml(config))
    assert {"tasks", "mixing"} <= set(saved) and not {"task", "data", "head", "loss", "thresholds"} & set(saved)
    assert parse_config(saved) == config


def test_each_tasks_relative_files_resolve_against_the_config_folder(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text("text,label\nx,y\n", encoding="utf-8")
    raw = two_tasks()
    raw["tasks"][0]["data"] = {"train": "a.csv"}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(raw), encoding="utf-8")
    assert load_config(tmp_path / "c.yaml").tasks[0].data.train == str(tmp_path / "a.csv")
