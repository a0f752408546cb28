"""Trainable sets, LR multipliers and events of the depth strategies, on a tiny 2-block BERT."""

from __future__ import annotations

from pathlib import Path

import pytest

from tunelab.config.schema import HeadConfig, ModelConfig, OptimConfig, StrategyConfig
from tunelab.errors import ConfigError
from tunelab.models import build_task_model, count_parameters
from tunelab.strategies import apply_trainable, compile_strategy


@pytest.fixture
def model(tiny_bert: Path):
    return build_task_model(ModelConfig(name=str(tiny_bert)), HeadConfig(), problem_type="single_label_classification",
                            label_names=["neg", "pos"], num_outputs=2)


def numel(model, prefix_filter) -> int:
    return sum(p.numel() for n, p in model.named_parameters() if prefix_filter(n))


def compile_(model, **kwargs):
    epochs = kwargs.pop("epochs", 3)
    return compile_strategy(StrategyConfig(**kwargs), model, OptimConfig(lr=1e-3, weight_decay=0.01), epochs)


def test_full_trains_everything(model) -> None:
    plan = compile_(model, name="full")
    apply_trainable(model, plan.trainable)
    trainable, total = count_parameters(model)
    assert trainable == total


def test_head_trains_pooler_and_classifier_only(model) -> None:
    plan = compile_(model, name="head")
    apply_trainable(model, plan.trainable)
    hidden = 32
    assert count_parameters(model)[0] == (hidden * hidden + hidden) + (hidden * 2 + 2)


def test_partial_freezes_embeddings_and_first_blocks(model) -> None:
    plan = compile_(model, name="partial", freeze_blocks=1)
    apply_trainable(model, plan.trainable)
    expected = numel(model, lambda n: ".layer.1." in n or "pooler" in n or "classifier" in n)
    assert count_parameters(model)[0] == expected
    assert not any("embeddings" in n or ".layer.0." in n for n in plan.trainable)


def test_partial_by_pattern(model) -> None:
    plan = compile_(model, name="partial", freeze_patterns=["*attention*"], freeze_embeddings=False)
    assert not any("attention" in n for n in plan.trainable)
    assert any("embeddings" in n for n in plan.trainable)


def test_partial_too_many_blocks(model) -> None:
    with pytest.raises(ConfigError, match="has 2 blocks"):
        compile_(model, name="partial", freeze_blocks=3)


def test_gradual_unfreezes_top_down_then_embeddings(model) -> None:
    plan = compile_(model, name="gradual", epochs=5)
    assert [e.epoch for e in plan.events] == [1, 2, 3]
    assert [e.description for e in plan.events] == ["unfreeze block 1", "unfreeze block 0", "unfreeze embeddings"]
    assert plan.trainable_at(0) == plan.trainable
    assert all(".layer.1." in n for n in plan.events[0].names)
    assert plan.trainable_at(3) == frozenset(n for n, _ in model.named_parameters())


def test_gradual_every_two_epochs_stops_at_run_end(model) -> None:
    plan = compile_(model, name="gradual", unfreeze_every=2, epochs=4)
    assert [e.epoch for e in plan.events] == [2]


def test_layerwise_lr_decay_and_head_multiplier(model) -> None:
    plan = compile_(model, name="full", layerwise_lr_decay=0.5, head_lr_multiplier=10.0)
    lr_of = {n: g.lr for g in plan.groups for n in g.names}
    assert lr_of["network.classifier.weight"] == pytest.approx(1e-2)
    assert lr_of["network.bert.encoder.layer.1.attention.self.query.weight"] == pytest.approx(1e-3 * 0.5)
    assert lr_of["network.bert.encoder.layer.0.attention.self.query.weight"] == pytest.approx(1e-3 * 0.25)
    assert lr_of["network.bert.embeddings.word_embeddings.weight"] == pytest.approx(1e-3 * 0.125)


def test_no_weight_decay_on_bias_and_norm(model) -> None:
    plan = compile_(model, name="full")
    decay_of = {n: g.weight_decay for g in plan.groups for n in g.names}
    assert decay_of["network.bert.encoder.layer.0.output.LayerNorm.weight"] == 0.0
    assert decay_of["network.bert.encoder.layer.0.output.dense.bias"] == 0.0
    assert decay_of["network.bert.encoder.layer.0.output.dense.weight"] == 0.01
    every = [n for g in plan.groups for n in g.names]
    assert len(every) == len(set(every)) == sum(1 for _ in model.parameters())
