"""benchmarks/compare_cost.py stays runnable: the base config and every row compare would run from it
validate, the commands it times name real CLI commands and options, and the peer's depth rules (layer-wise
LR, gradual unfreezing) are tunelab's. No training."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.conftest import load_benchmark

from tunelab.catalog import parse_config
from tunelab.cli.main import app
from tunelab.config.loading import config_to_yaml



@pytest.fixture(scope="module")
def bench():
    return load_benchmark("compare_cost")


@pytest.fixture()
def args(bench):
    return bench.parse_args(["--limit", "50", "--max-length", "32", "--epochs", "1", "--threads", "1"])


def test_rows_plan_and_validate(bench, args, tmp_path: Path) -> None:
    raw = bench.base_config(args)
    assert parse_config(raw).data.limit == 50
    configs = bench.plan_row_configs(raw, args.strategies, tmp_path / "compare")
    assert list(configs) == list(bench.STRATEGIES)
    assert configs["head"].train.epochs == 2 and configs["gradual"].train.epochs == 2
    assert configs["partial"].strategy.freeze_blocks == 4
    import yaml

    for name, path in bench.row_config_files(configs, tmp_path).items():
        assert parse_config(yaml.safe_load(path.read_text())).strategy.name == name
        assert path.read_text() == config_to_yaml(configs[name])


def test_commands_name_real_options(bench, tmp_path: Path) -> None:
    import typer

    commands = typer.main.get_command(app).commands
    for command in (bench.compare_command(tmp_path / "c.yaml", ["head", "lora"], tmp_path / "out"),
                    bench.train_command(tmp_path / "c.yaml", tmp_path / "out")):
        assert command[1:3] == ["-m", "tunelab"]
        options = {o for p in commands[command[3]].params for o in p.opts if o.startswith("--")}
        assert {a for a in command[4:] if a.startswith("--")} <= options
    peer = bench.peer_command(tmp_path / "c.yaml", "bf16", 2)
    parsed = bench.parse_args(peer[2:])
    assert parsed.worker == str(tmp_path / "c.yaml") and parsed.peer_precision == "bf16" and parsed.threads == 2


def test_fresh_cache_links_models(bench, tmp_path: Path) -> None:
    root = bench.fresh_cache(tmp_path / "cache", tmp_path / "models")
    assert (root / "models").resolve() == (tmp_path / "models").resolve() and not (root / "activations").exists()
    assert bench.child_env(root, 3)["TUNELAB_CACHE"] == str(root)


def test_peer_depth_rules_match_tunelab(bench) -> None:
    strategy = SimpleNamespace(layerwise_lr_decay=0.5, head_lr_multiplier=2.0)
    assert bench.lr_multiplier("classifier.weight", 6, strategy) == 2.0
    assert bench.lr_multiplier("bert.encoder.layer.5.output.dense.weight", 6, strategy) == 0.5
    assert bench.lr_multiplier("bert.encoder.layer.0.output.dense.weight", 6, strategy) == 0.5 ** 6
    assert bench.lr_multiplier("bert.embeddings.word_embeddings.weight", 6, strategy) == 0.5 ** 7


def test_gradual_callback_unfreezes_from_the_top(bench) -> None:
    from transformers import BertConfig, BertForSequenceClassification

    model = BertForSequenceClassification(BertConfig(vocab_size=30, hidden_size=8, num_hidden_layers=2,
                                                     num_attention_heads=2, intermediate_size=8))
    model = bench._vs_hf().peer_strategy(model, "head")
    callback = bench.gradual_callback(1)
    trains = lambda prefix: all(p.requires_grad for n, p in model.named_parameters() if n.startswith(prefix))  # noqa: E731
    for epoch, (top, bottom, embeddings) in enumerate([(False, False, False), (True, False, False),
                                                       (True, True, False), (True, True, True)]):
        callback.on_epoch_begin(None, SimpleNamespace(epoch=float(epoch)), None, model=model)
        assert (trains("bert.encoder.layer.1."), trains("bert.encoder.layer.0."), trains("bert.embeddings.")) == \
            (top, bottom, embeddings)


def test_metric_differences_and_ratios(bench) -> None:
    same = {"test": {"accuracy": 0.9, "macro_f1": 0.8, "loss": 0.3}}
    legs = {"compare": {"wall_s": 10.0, "rows": {"head": same}},
            "separate": {"wall_s": 15.0, "rows": {"head": same, "full": {"test": {"accuracy": 0.5}}}},
            "peer fp32": {"wall_s": 40.0, "rows": {}}}
    assert bench.metric_differences(legs["compare"], legs["separate"]) == {"head": []}
    assert bench.ratios(legs) == {"separate": 1.5, "peer fp32": 4.0}
    import numpy as np

    scores = bench.scores(np.array([[1.0, 0.0], [1.0, 0.0]]), np.array([0, 1]), 2)
    assert scores["accuracy"] == 0.5 and scores["macro_f1"] == pytest.approx(1 / 3)
