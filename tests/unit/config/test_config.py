from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tunelab.catalog import load_config, parse_config
from tunelab.config import apply_overrides
from tunelab.errors import ConfigError

REPO = Path(__file__).resolve().parents[3]

ISSUE_EXAMPLE = """
model: minilm
task: classification
data:
  train: data/train.csv
  test: data/test.csv
  text_column: text
  label_column: label
  max_length: 256
strategy:
  name: partial
  freeze_blocks: 4
  layerwise_lr_decay: 0.9
optim: {lr: 5.0e-5, weight_decay: 0.01}
schedule: {name: linear, warmup_ratio: 0.1}
train: {epochs: 3, batch_size: 32, seed: 0}
early_stopping: {metric: macro_f1, patience: 2}
output: runs/bbc-partial
"""


def test_issue_example_config_is_valid() -> None:
    config = parse_config(yaml.safe_load(ISSUE_EXAMPLE))
    assert config.model.name == "minilm"
    assert config.strategy.freeze_blocks == 4
    assert config.strategy.layerwise_lr_decay == 0.9
    assert config.early_stopping.patience == 2


def shipped_configs() -> list[Path]:
    found = sorted(p for root in (REPO / "configs", REPO / "src" / "tunelab" / "configs") for p in root.rglob("*.yaml"))
    assert found, "no shipped configs found"
    return found


@pytest.mark.parametrize("path", shipped_configs(), ids=lambda p: str(p.relative_to(REPO)))
def test_every_shipped_config_validates(path: Path) -> None:
    load_config(path)


def test_unknown_key_gets_did_you_mean() -> None:
    raw = {"data": {"builtin": "bbc-news"}, "optim": {"learning_rate": 1e-4}}
    with pytest.raises(ConfigError) as err:
        parse_config(raw)
    assert "optim.learning_rate" in str(err.value)
    assert "did you mean 'lr'" in str(err.value)


def test_all_errors_reported_at_once() -> None:
    raw = {"data": {"builtin": "bbc-news", "max_length": 0}, "train": {"epochs": "many", "batch_size": -1}}
    with pytest.raises(ConfigError) as err:
        parse_config(raw, source="c.yaml")
    text = str(err.value)
    for path in ("data.max_length", "train.epochs", "train.batch_size"):
        assert path in text
    assert text.startswith("c.yaml: 3 config problems")


def test_partial_needs_freeze_blocks() -> None:
    with pytest.raises(ConfigError, match="freeze_blocks"):
        parse_config({"data": {"builtin": "bbc-news"}, "strategy": {"name": "partial"}})


def test_unknown_strategy_lists_registry() -> None:
    with pytest.raises(ConfigError, match="full, head, partial, gradual"):
        parse_config({"data": {"builtin": "bbc-news"}, "strategy": {"name": "magic"}})


def test_contradictory_warmup() -> None:
    with pytest.raises(ConfigError, match="warmup_ratio or schedule.warmup_steps"):
        parse_config({"data": {"builtin": "bbc-news"}, "schedule": {"warmup_ratio": 0.1, "warmup_steps": 10}})


def test_metric_must_fit_task() -> None:
    with pytest.raises(ConfigError, match="early_stopping.metric 'macro_f1' is not computed for task regression"):
        parse_config({"task": "regression", "data": {"train": "x.csv"}, "early_stopping": {"metric": "macro_f1"}})


def test_default_metric_is_the_tasks_own() -> None:
    assert parse_config({"task": "regression", "data": {"train": "x.csv"}}).early_stopping.metric == "mse"
    assert parse_config({"data": {"train": "x.csv"}}).early_stopping.metric == "macro_f1"


def test_data_source_required_and_exclusive() -> None:
    with pytest.raises(ConfigError, match="data.train"):
        parse_config({"data": {}})
    with pytest.raises(ConfigError, match="exclusive"):
        parse_config({"data": {"builtin": "bbc-news", "train": "x.csv"}})


def test_overrides_parse_values_and_create_sections() -> None:
    raw = apply_overrides({"model": "minilm", "data": {"builtin": "bbc-news"}},
                          ["optim.lr=1e-4", "train.epochs=2", "model.trust_remote_code=false", "strategy.freeze_patterns=[a, b]"])
    assert raw["optim"]["lr"] == 1e-4 and raw["train"]["epochs"] == 2
    assert raw["model"] == {"name": "minilm", "trust_remote_code": False}
    assert raw["strategy"]["freeze_patterns"] == ["a", "b"]
    with pytest.raises(ConfigError, match="key.path=value"):
        apply_overrides({}, ["novalue"])


def test_yaml_syntax_error_names_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("data:\n  builtin: bbc-news\n   oops: [\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"bad.yaml:\d+:\d+: invalid YAML"):
        load_config(path)


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")


def test_relative_data_paths_resolve_against_config_folder(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "train.csv").write_text("text,label\na,b\n", encoding="utf-8")
    (tmp_path / "c.yaml").write_text("data: {train: data/train.csv}\n", encoding="utf-8")
    assert load_config(tmp_path / "c.yaml").data.train == str(tmp_path / "data" / "train.csv")


def test_a_config_saved_with_every_method_section_spelled_out_still_loads() -> None:
    """Run directories written before the sections moved to their methods list every section, null but
    the chosen one; they must still load (resume, predict, eval)."""
    sections = {name: None for name in ("lora", "adapter", "prompt", "prefix", "ia3", "bitfit")}
    raw = {"data": {"builtin": "bbc-news"}, "strategy": {"name": "lora", **sections, "lora": {"rank": 4}}}
    config = parse_config(raw)
    assert config.strategy.lora.rank == 4 and config.strategy.lora.alpha == 16.0
    assert config.strategy.ia3 is None
